"""The registry page and the PRM versions REST endpoints, mounted at the site root (scoring and ranking,
which run on a worker, are in workers.api_urls)."""

from django.urls import path

from prm import api_views, registry_views
from stepmark.converters import register_id_converter

register_id_converter()  # `<id:...>` below: a bigint key, 404 past it (Django registers converters in the URLconf)

urlpatterns = [
    path("projects/<id:project_id>/prm/versions/", registry_views.versions_page, name="prm-versions"),
    path("projects/<id:project_id>/prm/versions/<id:version_id>/promote/", registry_views.version_promote_action,
         name="prm-version-promote"),
    path("projects/<id:project_id>/prm/versions/rollback/", registry_views.rollback_action, name="prm-versions-rollback"),
    path("api/projects/<id:project_id>/prm-versions/", api_views.VersionListView.as_view(), name="api-prm-versions"),
    path("api/projects/<id:project_id>/prm-versions/<id:version_id>/promote/", api_views.VersionPromoteView.as_view(),
         name="api-prm-version-promote"),
    path("api/projects/<id:project_id>/prm-versions/rollback/", api_views.RollbackView.as_view(),
         name="api-prm-versions-rollback"),
]
