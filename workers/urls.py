from django.urls import path

from workers import views

urlpatterns = [
    path("projects/<int:project_id>/jobs/", views.jobs_page, name="jobs"),
    path("projects/<int:project_id>/jobs/export/", views.export_job_start_view, name="export-job-start"),
    path("projects/<int:project_id>/jobs/sample/", views.sample_job_start_view, name="sample-job-start"),
    path("projects/<int:project_id>/jobs/mc/", views.mc_job_start_view, name="mc-job-start"),
    path("projects/<int:project_id>/jobs/prelabel/", views.prelabel_job_start_view, name="prelabel-job-start"),
    path("projects/<int:project_id>/jobs/priority/", views.priority_refresh_view, name="priority-refresh"),
    path("projects/<int:project_id>/jobs/<int:job_id>/", views.job_row, name="job-row"),
    path("projects/<int:project_id>/jobs/<int:job_id>/cancel/", views.job_cancel_view, name="job-cancel"),
    path("projects/<int:project_id>/jobs/<int:job_id>/requeue/", views.job_requeue_view, name="job-requeue"),
    path("projects/<int:project_id>/jobs/<int:job_id>/download/", views.job_download, name="job-download"),
]
