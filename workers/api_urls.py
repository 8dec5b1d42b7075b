from django.urls import path

from workers import api

urlpatterns = [
    path("projects/<int:project_id>/jobs/", api.ProjectJobsView.as_view(), name="api-project-jobs"),
    path("projects/<int:project_id>/jobs/<int:job_id>/requeue/", api.JobRequeueView.as_view(), name="api-job-requeue"),
]
