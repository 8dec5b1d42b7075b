from django.urls import path

from workers import api

urlpatterns = [
    path("projects/<id:project_id>/jobs/", api.ProjectJobsView.as_view(), name="api-project-jobs"),
    path("projects/<id:project_id>/jobs/<id:job_id>/requeue/", api.JobRequeueView.as_view(), name="api-job-requeue"),
]
