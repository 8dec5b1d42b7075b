from django.urls import path

from prm import views

urlpatterns = [
    path("projects/<id:project_id>/prm/runs/", views.runs_page, name="prm-runs"),
    path("projects/<id:project_id>/prm/runs/start/", views.run_start, name="prm-run-start"),
    path("projects/<id:project_id>/prm/runs/<id:run_id>/", views.run_page, name="prm-run"),
    path("projects/<id:project_id>/prm/runs/<id:run_id>/progress/", views.run_progress, name="prm-run-progress"),
    path("projects/<id:project_id>/prm/benchmark/", views.benchmark_page, name="prm-benchmark"),
    path("projects/<id:project_id>/prm/benchmark/start/", views.benchmark_start, name="prm-benchmark-start"),
]
