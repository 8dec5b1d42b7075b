from django.urls import path

from annotation.api import labelling, people, views
from stepmark.converters import register_id_converter

register_id_converter()  # `<id:...>` below: a bigint key, 404 past it (Django registers converters in the URLconf)

app_name = "api"
_ASSIGNMENT = "projects/<id:project_id>/assignments/<id:assignment_id>/"
_REVIEW_SOLUTION = "projects/<id:project_id>/review/solutions/<id:solution_id>/"
urlpatterns: list = [
    path("projects/<id:project_id>/imports/", views.ProjectImportsView.as_view(), name="project-imports"),
    path(
        "projects/<id:project_id>/exports/<str:format_name>/",
        views.ProjectExportView.as_view(),
        name="project-export",
    ),
    # A project's people (annotation.api.people): admins only.
    path("projects/<id:project_id>/members/", people.ProjectMembersView.as_view(), name="project-members"),
    path(
        "projects/<id:project_id>/members/<id:membership_id>/",
        people.ProjectMemberView.as_view(),
        name="project-member",
    ),
    path("projects/<id:project_id>/invitations/", people.ProjectInvitationsView.as_view(), name="project-invitations"),
    path(
        "projects/<id:project_id>/invitations/<id:invitation_id>/",
        people.ProjectInvitationView.as_view(),
        name="project-invitation",
    ),
    # Labelling and review (annotation.api.labelling).
    path("projects/", labelling.ProjectListView.as_view(), name="projects"),
    path("projects/<id:project_id>/", labelling.ProjectDetailView.as_view(), name="project"),
    path("projects/<id:project_id>/items/", labelling.ProjectItemsView.as_view(), name="project-items"),
    path(
        "projects/<id:project_id>/solutions/<id:solution_id>/",
        labelling.SolutionDetailView.as_view(),
        name="project-solution",
    ),
    path("projects/<id:project_id>/next/", labelling.NextAssignmentView.as_view(), name="project-next"),
    path(_ASSIGNMENT + "labels/", labelling.AssignmentLabelsView.as_view(), name="assignment-labels"),
    path(
        _ASSIGNMENT + "steps/<id:step_id>/label/",
        labelling.AssignmentStepLabelView.as_view(),
        name="assignment-step-label",
    ),
    path(_ASSIGNMENT + "submit/", labelling.AssignmentSubmitView.as_view(), name="assignment-submit"),
    path(_ASSIGNMENT + "skip/", labelling.AssignmentSkipView.as_view(), name="assignment-skip"),
    path("projects/<id:project_id>/review/", labelling.ReviewQueueView.as_view(), name="review-queue"),
    path(_REVIEW_SOLUTION, labelling.ReviewSolutionView.as_view(), name="review-solution"),
    path(_REVIEW_SOLUTION + "steps/<id:step_id>/gold/", labelling.ReviewGoldView.as_view(), name="review-gold"),
]
