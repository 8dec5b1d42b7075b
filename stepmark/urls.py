from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

# Swagger UI is vendored (drf-spectacular-sidecar) and its start-up script is a file of this site
# (the split view), so the docs work offline and under the site's content policy unchanged.
# Logged-in users only: an anonymous visitor is sent to the login page.
api_docs = login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema"))

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
    path("api/", include("annotation.api_urls")),
    path("api/", include("workers.api_urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("annotation.urls")),
    path("", include("workers.urls")),
    path("", include("prm.registry_urls")),
]
# No route serves MEDIA_ROOT, in any mode: stored exports and images are served only by views that
# check the project (`/images/<sha>/`, a job's download).
