from django.contrib import admin
from django.urls import include, path, register_converter
from django.urls.converters import get_converters
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from stepmark.converters import IdConverter

# Before the includes below: their routes use `<id:...>`.
if "id" not in get_converters():
    register_converter(IdConverter, "id")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("annotation.api_urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("annotation.urls")),
    path("", include("workers.urls")),
    path("", include("prm.urls")),
    path("", include("prm.registry_urls")),
]
# No route serves MEDIA_ROOT, in any mode: stored exports and images are served only by views that
# check the project (`/images/<sha>/`, a job's download).
