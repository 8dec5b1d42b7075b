"""REST endpoints of the PRM's versions: list them, promote and roll back.

Members see a project's versions; only its admins may change the live version; anyone else is told
the project does not exist (404). Scoring and ranking run on a gpu worker: workers.scoring_api.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import project_for_admin, project_for_member
from prm.models import PRMVersion, PromotionDecision
from prm.registry import RegistryError, version_promote, version_rollback

PROJECT_ID = OpenApiParameter("project_id", OpenApiTypes.INT, OpenApiParameter.PATH)
VERSION_ID = OpenApiParameter("version_id", OpenApiTypes.INT, OpenApiParameter.PATH)


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
