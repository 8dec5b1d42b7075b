from django.urls import path

from annotation.api import views

app_name = "api"
urlpatterns: list = [
    path("projects/<int:project_id>/imports/", views.ProjectImportsView.as_view(), name="project-imports"),
    path(
        "projects/<int:project_id>/exports/<str:format_name>/",
        views.ProjectExportView.as_view(),
        name="project-export",
    ),
]
