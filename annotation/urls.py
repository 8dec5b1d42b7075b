from django.urls import path

from annotation import dashboard_views, label_views, people_views, project_views, review_views, views
from stepmark.converters import register_id_converter

register_id_converter()  # `<id:...>` below: a bigint key, 404 past it (Django registers converters in the URLconf)

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/new/", project_views.project_create_view, name="project-create"),
    path("projects/<id:project_id>/settings/", project_views.project_settings, name="project-settings"),
    path(
        "projects/<id:project_id>/settings/preview/",
        project_views.project_guidelines_preview,
        name="project-guidelines-preview",
    ),
    path("projects/<id:project_id>/members/", people_views.members, name="project-members"),
    path("projects/<id:project_id>/members/add/", people_views.member_add, name="member-add"),
    path("projects/<id:project_id>/members/<id:membership_id>/role/", people_views.member_role, name="member-role"),
    path("projects/<id:project_id>/members/<id:membership_id>/remove/", people_views.member_remove, name="member-remove"),
    path("projects/<id:project_id>/invitations/", people_views.invitation_create_view, name="invitation-create"),
    path(
        "projects/<id:project_id>/invitations/<id:invitation_id>/revoke/",
        people_views.invitation_revoke_view,
        name="invitation-revoke",
    ),
    path("invitations/<str:token>/", people_views.invitation_page, name="invitation"),
    path("projects/<id:project_id>/next/", label_views.next_item, name="next-item"),
    path("projects/<id:project_id>/assignments/<id:assignment_id>/", label_views.label_page, name="label"),
    path(
        "projects/<id:project_id>/assignments/<id:assignment_id>/steps/<id:step_id>/label/",
        label_views.label_step,
        name="label-step",
    ),
    path("projects/<id:project_id>/assignments/<id:assignment_id>/submit/", label_views.submit, name="submit"),
    path("projects/<id:project_id>/assignments/<id:assignment_id>/skip/", label_views.skip, name="skip"),
    path("projects/<id:project_id>/assignments/<id:assignment_id>/heartbeat/", label_views.heartbeat, name="heartbeat"),
    path("projects/<id:project_id>/assignments/<id:assignment_id>/prefetch/", label_views.prefetch_next, name="prefetch-next"),
    path("images/<str:sha256>/", label_views.image_file, name="image"),
    path("projects/<id:project_id>/review/", review_views.review_list, name="review-list"),
    path("projects/<id:project_id>/dashboard/", dashboard_views.dashboard, name="dashboard"),
    path("projects/<id:project_id>/review/solutions/<id:solution_id>/", review_views.review_solution, name="review-solution"),
    path(
        "projects/<id:project_id>/review/solutions/<id:solution_id>/steps/<id:step_id>/gold/",
        review_views.review_set_gold,
        name="review-set-gold",
    ),
]
