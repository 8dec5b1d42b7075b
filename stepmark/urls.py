from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

# The API docs page loads Swagger UI from its CDN; its start-up script is a file of this site
# (the split view), so the policy widens for that one page by the CDN alone.
_SWAGGER_CDN = "https://cdn.jsdelivr.net"
api_docs = csp_update({"script-src": [_SWAGGER_CDN], "style-src": [_SWAGGER_CDN], "img-src": [_SWAGGER_CDN]})(
    SpectacularSwaggerSplitView.as_view(url_name="api-schema")
)

# Routes use `<id:...>` (stepmark.converters), registered when the annotation app is ready.
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
