from django.urls import path

from stepmark.converters import register_id_converter
from workers import api, scoring_api

register_id_converter()  # `<id:...>` below: a bigint key, 404 past it (Django registers converters in the URLconf)

urlpatterns = [
    path("projects/<id:project_id>/jobs/", api.ProjectJobsView.as_view(), name="api-project-jobs"),
    path("projects/<id:project_id>/jobs/<id:job_id>/requeue/", api.JobRequeueView.as_view(), name="api-job-requeue"),
    # The PRM's scoring API: the model runs on a gpu worker (workers.scoring_api).
    path("prm/score/", scoring_api.ScoreView.as_view(), name="api-prm-score"),
    path("prm/rank/", scoring_api.RankView.as_view(), name="api-prm-rank"),
    path("prm/scoring-requests/<id:request_id>/", scoring_api.ScoringRequestView.as_view(),
         name="api-prm-scoring-request"),
]
