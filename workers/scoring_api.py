"""REST endpoints of PRM scoring: score a solution, rank responses (Best-of-N), read a request's outcome.

Reviewers and admins of a project may score and rank with its PRM (annotators get 403: scores are
machine hints they see only where the project shows them); anyone else is told the project does
not exist (404). The model runs on a gpu worker, never in the web process
(workers.scoring_services): the request is checked here (400 with the reason, nothing saved), then
the call waits up to STEPMARK_SCORING_WAIT_SECONDS for the worker's answer: 200 with the result, or
202 with the request's id and the URL to poll (`GET /api/prm/scoring-requests/<id>/`, which answers
as the POST would have once the request is finished). A broker that is down answers 503.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import project_for_reviewer
from prm.core.metrics import AGGREGATIONS
from prm.inference import InferenceError
from workers.models import ScoringRequest
from workers.scoring_services import (
    ScoringQueueUnavailable,
    scoring_request_prepare,
    scoring_request_start,
    scoring_request_wait,
)

REQUEST_ID = OpenApiParameter("request_id", OpenApiTypes.INT, OpenApiParameter.PATH)


class _ScoringRequest(serializers.Serializer):
    project = serializers.IntegerField(help_text="Project id; its live PRM scores unless `version` names one.")
    version = serializers.CharField(required=False, help_text="A version name of the project.")
    question = serializers.CharField(required=False, help_text="Defaults to the item's question when `item` is given.")
    image = serializers.JSONField(required=False, help_text="A base64 image (or data: URL), or a list of them.")
    item = serializers.IntegerField(required=False, help_text="Use the images (and question) of this item instead.")
    aggregation = serializers.ChoiceField(choices=AGGREGATIONS, default="mean")

    def validate_image(self, value):
        images = [value] if isinstance(value, str) else value
        if not isinstance(images, list) or not all(isinstance(v, str) for v in images):
            raise serializers.ValidationError("image must be a base64 string or a list of them")
        return images

    def validate(self, data):
        if "question" not in data and "item" not in data:
            raise serializers.ValidationError("give a question (or an item whose question to use)")
        return data


class ScoreRequestSerializer(_ScoringRequest):
    steps = serializers.ListField(child=serializers.CharField(allow_blank=False), min_length=1)


class RankRequestSerializer(_ScoringRequest):
    responses = serializers.ListField(
        child=serializers.JSONField(), min_length=1,
        help_text="Each a response text (split into steps at blank lines) or a list of steps.",
    )


class ScoreResultSerializer(serializers.Serializer):
    version = serializers.CharField()
    steps = serializers.ListField(child=serializers.CharField())
    step_scores = serializers.ListField(child=serializers.FloatField())
    response_score = serializers.FloatField()
    aggregation = serializers.CharField()


class RankedResponseSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    score = serializers.FloatField()
    steps = serializers.ListField(child=serializers.CharField())
    step_scores = serializers.ListField(child=serializers.FloatField())


class RankResultSerializer(serializers.Serializer):
    version = serializers.CharField()
    aggregation = serializers.CharField()
    ranking = RankedResponseSerializer(many=True)


class ScoringPendingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ScoringRequest.Status.choices)
    url = serializers.CharField(help_text="GET it until it answers 200 (done) or 400/500 (failed).")


class ScoringErrorSerializer(serializers.Serializer):
    error = serializers.CharField()


PENDING = OpenApiResponse(ScoringPendingSerializer, description="Not finished within the wait: poll `url`.")
ERROR = OpenApiResponse(ScoringErrorSerializer, description="The request cannot be served; `error` says why.")
QUEUE_DOWN = OpenApiResponse(OpenApiTypes.OBJECT, description="The job queue is unavailable.")


def _outcome(scoring_request: ScoringRequest) -> Response:
    """The answer for a request as it stands: its result, its error, or where to poll."""
    if scoring_request.status == ScoringRequest.Status.DONE:
        return Response(scoring_request.result)
    if scoring_request.status == ScoringRequest.Status.FAILED:
        code = status.HTTP_400_BAD_REQUEST if scoring_request.bad_request else status.HTTP_500_INTERNAL_SERVER_ERROR
        return Response({"error": scoring_request.error, "id": scoring_request.pk, "status": scoring_request.status},
                        status=code)
    url = reverse("api-prm-scoring-request", kwargs={"request_id": scoring_request.pk})
    return Response({"id": scoring_request.pk, "status": scoring_request.status, "url": url},
                    status=status.HTTP_202_ACCEPTED)


def _serve(request, serializer_class, kind: str) -> Response:
    form = serializer_class(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    project = project_for_reviewer(request.user, data["project"])
    try:
        payload = scoring_request_prepare(
            project=project, kind=kind, version_name=data.get("version"), aggregation=data["aggregation"],
            question=data.get("question"), images=data.get("image") or (), item_id=data.get("item"),
            steps=data.get("steps", ()), responses=data.get("responses", ()),
        )
        scoring_request = scoring_request_start(project=project, kind=kind, payload=payload, user=request.user)
    except InferenceError as exc:
        return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    except ScoringQueueUnavailable as exc:
        return Response({"detail": str(exc), "code": "queue_unavailable", "id": exc.request_id},
                        status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return _outcome(scoring_request_wait(scoring_request=scoring_request))


class ScoreView(APIView):
    """POST: step scores and the response score of one solution."""

    @extend_schema(operation_id="prm_score", request=ScoreRequestSerializer,
                   responses={200: ScoreResultSerializer, 202: PENDING, 400: ERROR, 503: QUEUE_DOWN})
    def post(self, request):
        return _serve(request, ScoreRequestSerializer, ScoringRequest.Kind.SCORE)


class RankView(APIView):
    """POST: responses to one question, best first by response score (select the best of N)."""

    @extend_schema(operation_id="prm_rank", request=RankRequestSerializer,
                   responses={200: RankResultSerializer, 202: PENDING, 400: ERROR, 503: QUEUE_DOWN})
    def post(self, request):
        return _serve(request, RankRequestSerializer, ScoringRequest.Kind.RANK)


class ScoringRequestView(APIView):
    """GET: a scoring request's outcome: 202 while it waits for a worker, then as its POST would have answered."""

    @extend_schema(operation_id="prm_scoring_request_retrieve", parameters=[REQUEST_ID],
                   responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="The score or rank result."),
                              202: PENDING, 400: ERROR, 500: ERROR})
    def get(self, request, request_id: int):
        scoring_request = get_object_or_404(ScoringRequest, pk=request_id)
        project_for_reviewer(request.user, scoring_request.project_id)
        return _outcome(scoring_request)
