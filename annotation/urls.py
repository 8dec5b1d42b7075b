from django.urls import path

from annotation import dashboard_views, label_views, review_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<int:project_id>/next/", label_views.next_item, name="next-item"),
    path("projects/<int:project_id>/assignments/<int:assignment_id>/", label_views.label_page, name="label"),
    path(
        "projects/<int:project_id>/assignments/<int:assignment_id>/steps/<int:step_id>/label/",
        label_views.label_step,
        name="label-step",
    ),
    path("projects/<int:project_id>/assignments/<int:assignment_id>/submit/", label_views.submit, name="submit"),
    path("projects/<int:project_id>/assignments/<int:assignment_id>/skip/", label_views.skip, name="skip"),
    path("projects/<int:project_id>/assignments/<int:assignment_id>/heartbeat/", label_views.heartbeat, name="heartbeat"),
    path("projects/<int:project_id>/assignments/<int:assignment_id>/prefetch/", label_views.prefetch_next, name="prefetch-next"),
    path("images/<str:sha256>/", label_views.image_file, name="image"),
    path("projects/<int:project_id>/review/", review_views.review_list, name="review-list"),
    path("projects/<int:project_id>/dashboard/", dashboard_views.dashboard, name="dashboard"),
    path("projects/<int:project_id>/review/solutions/<int:solution_id>/", review_views.review_solution, name="review-solution"),
    path(
        "projects/<int:project_id>/review/solutions/<int:solution_id>/steps/<int:step_id>/gold/",
        review_views.review_set_gold,
        name="review-set-gold",
    ),
]
