"""REST endpoints of the PRM: score a solution, rank responses, list versions, promote and roll back.

Reviewers and admins of a project may score and rank with its PRM (annotators get 403: scores are
machine hints they see only where the project shows them); members see its versions; only its
admins may change the live version; anyone else is told the project does not exist (404).
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import project_for_admin, project_for_member, project_for_reviewer
from annotation.models import Item
from prm.core.metrics import AGGREGATIONS
from prm.inference import (
    InferenceError,
    rank_responses,
    request_images,
    score_solution,
    scorer_for_directory,
    version_for,
)
from prm.models import PRMVersion, PromotionDecision
from prm.registry import RegistryError, version_promote, version_rollback

PROJECT_ID = OpenApiParameter("project_id", OpenApiTypes.INT, OpenApiParameter.PATH)
VERSION_ID = OpenApiParameter("version_id", OpenApiTypes.INT, OpenApiParameter.PATH)


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


class VersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PRMVersion
        fields = ["id", "name", "status", "backbone", "directory", "created_from", "metrics", "created_at", "promoted_at"]
        read_only_fields = fields


class DecisionSerializer(serializers.ModelSerializer):
    version = serializers.SlugRelatedField(slug_field="name", read_only=True)
    previous_live = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = PromotionDecision
        fields = ["id", "action", "version", "previous_live", "candidate_metric", "live_metric", "margin", "reason",
                  "created_at"]
        read_only_fields = fields


def _prepare(request, serializer_class):
    """(validated data, project, version, scorer, question, images) of a scoring request."""
    form = serializer_class(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    project = project_for_reviewer(request.user, data["project"])
    version = version_for(project=project, name=data.get("version"))
    images = request_images(project=project, images=data.get("image") or (), item_id=data.get("item"))
    question = data.get("question") or Item.objects.get(project=project, pk=data["item"]).question
    scorer = scorer_for_directory(version.directory, aggregation=data["aggregation"])
    return data, version, scorer, question, images


def _bad_request(exc: Exception) -> Response:
    return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)


class ScoreView(APIView):
    """POST: step scores and the response score of one solution."""

    @extend_schema(operation_id="prm_score", request=ScoreRequestSerializer, responses={200: ScoreResultSerializer})
    def post(self, request):
        try:
            data, version, scorer, question, images = _prepare(request, ScoreRequestSerializer)
            result = score_solution(scorer=scorer, question=question, steps=data["steps"], images=images)
        except InferenceError as exc:
            return _bad_request(exc)
        return Response({"version": version.name, "steps": result.steps, "step_scores": result.step_scores,
                         "response_score": result.score, "aggregation": scorer.aggregation})


class RankView(APIView):
    """POST: responses to one question, best first by response score (select the best of N)."""

    @extend_schema(operation_id="prm_rank", request=RankRequestSerializer, responses={200: RankResultSerializer})
    def post(self, request):
        try:
            data, version, scorer, question, images = _prepare(request, RankRequestSerializer)
            ranked = rank_responses(scorer=scorer, question=question, responses=data["responses"], images=images)
        except InferenceError as exc:
            return _bad_request(exc)
        return Response({
            "version": version.name, "aggregation": scorer.aggregation,
            "ranking": [{"index": r.index, "score": r.score, "steps": r.steps, "step_scores": r.step_scores}
                        for r in ranked],
        })


class VersionListView(APIView):
    @extend_schema(operation_id="prm_versions_list", parameters=[PROJECT_ID], responses={200: VersionSerializer(many=True)})
    def get(self, request, project_id: int):
        project = project_for_member(request.user, project_id)
        return Response(VersionSerializer(PRMVersion.objects.filter(project=project), many=True).data)


class VersionPromoteView(APIView):
    @extend_schema(operation_id="prm_version_promote", parameters=[PROJECT_ID, VERSION_ID], request=None,
                   responses={200: DecisionSerializer})
    def post(self, request, project_id: int, version_id: int):
        project = project_for_admin(request.user, project_id)
        version = get_object_or_404(PRMVersion, pk=version_id, project=project)
        try:
            decision = version_promote(version=version, user=request.user)
        except RegistryError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(DecisionSerializer(decision).data)


class RollbackView(APIView):
    @extend_schema(operation_id="prm_versions_rollback", parameters=[PROJECT_ID], request=None,
                   responses={200: DecisionSerializer})
    def post(self, request, project_id: int):
        project = project_for_admin(request.user, project_id)
        try:
            decision = version_rollback(project=project, user=request.user)
        except RegistryError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(DecisionSerializer(decision).data)
