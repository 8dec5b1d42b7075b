from django.urls import path

from stepmark.converters import register_id_converter
from workers import import_views, training_views, views

register_id_converter()  # `<id:...>` below: a bigint key, 404 past it (Django registers converters in the URLconf)

urlpatterns = [
    path("projects/<id:project_id>/import/", import_views.import_page, name="import"),
    path("projects/<id:project_id>/import/start/", import_views.import_start, name="import-start"),
    path("projects/<id:project_id>/jobs/", views.jobs_page, name="jobs"),
    path("projects/<id:project_id>/jobs/export/", views.export_job_start_view, name="export-job-start"),
    path("projects/<id:project_id>/jobs/sample/", views.sample_job_start_view, name="sample-job-start"),
    path("projects/<id:project_id>/jobs/mc/", views.mc_job_start_view, name="mc-job-start"),
    path("projects/<id:project_id>/jobs/prelabel/", views.prelabel_job_start_view, name="prelabel-job-start"),
    path("projects/<id:project_id>/jobs/judge/", views.judge_job_start_view, name="judge-job-start"),
    path("projects/<id:project_id>/jobs/priority/", views.priority_refresh_view, name="priority-refresh"),
    path("projects/<id:project_id>/jobs/<id:job_id>/", views.job_row, name="job-row"),
    path("projects/<id:project_id>/jobs/<id:job_id>/cancel/", views.job_cancel_view, name="job-cancel"),
    path("projects/<id:project_id>/jobs/<id:job_id>/requeue/", views.job_requeue_view, name="job-requeue"),
    path("projects/<id:project_id>/jobs/<id:job_id>/download/", views.job_download, name="job-download"),
    path("projects/<id:project_id>/jobs/<id:job_id>/download/images/", views.job_download_images,
         name="job-download-images"),
    path("projects/<id:project_id>/jobs/<id:job_id>/download/meta/", views.job_download_meta,
         name="job-download-meta"),
    path("projects/<id:project_id>/prm/runs/", training_views.runs_page, name="prm-runs"),
    path("projects/<id:project_id>/prm/runs/start/", training_views.run_start, name="prm-run-start"),
    path("projects/<id:project_id>/prm/runs/<id:run_id>/", training_views.run_page, name="prm-run"),
    path(
        "projects/<id:project_id>/prm/runs/<id:run_id>/progress/",
        training_views.run_progress,
        name="prm-run-progress",
    ),
    path("projects/<id:project_id>/prm/benchmark/", training_views.benchmark_page, name="prm-benchmark"),
    path("projects/<id:project_id>/prm/benchmark/start/", training_views.benchmark_start, name="prm-benchmark-start"),
]
