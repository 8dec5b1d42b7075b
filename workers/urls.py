from django.urls import path

from workers import views

urlpatterns = [
    path("projects/<int:project_id>/jobs/", views.jobs_page, name="jobs"),
    path("projects/<int:project_id>/jobs/export/", views.export_job_start, name="export-job-start"),
    path("projects/<int:project_id>/jobs/<int:job_id>/", views.job_row, name="job-row"),
    path("projects/<int:project_id>/jobs/<int:job_id>/cancel/", views.job_cancel_view, name="job-cancel"),
    path("projects/<int:project_id>/jobs/<int:job_id>/download/", views.job_download, name="job-download"),
]
