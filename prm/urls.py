from django.urls import path

from prm import views

urlpatterns = [
    path("projects/<int:project_id>/prm/runs/", views.runs_page, name="prm-runs"),
    path("projects/<int:project_id>/prm/runs/start/", views.run_start, name="prm-run-start"),
    path("projects/<int:project_id>/prm/runs/<int:run_id>/", views.run_page, name="prm-run"),
    path("projects/<int:project_id>/prm/runs/<int:run_id>/progress/", views.run_progress, name="prm-run-progress"),
    path("projects/<int:project_id>/prm/benchmark/", views.benchmark_page, name="prm-benchmark"),
    path("projects/<int:project_id>/prm/benchmark/start/", views.benchmark_start, name="prm-benchmark-start"),
]
