from django.urls import path

from stepmark.converters import register_id_converter
from workers import api

register_id_converter()  # `<id:...>` below: a bigint key, 404 past it (Django registers converters in the URLconf)

urlpatterns = [
    path("projects/<id:project_id>/jobs/", api.ProjectJobsView.as_view(), name="api-project-jobs"),
    path("projects/<id:project_id>/jobs/<id:job_id>/requeue/", api.JobRequeueView.as_view(), name="api-job-requeue"),
]
