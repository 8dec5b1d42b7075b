"""Import and export endpoints. Only project admins and staff may use them (annotation.access)."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import project_for_admin
from annotation.api.serializers import (
    ExportQuerySerializer,
    ImportErrorSerializer,
    ImportRecordSerializer,
    ImportRequestSerializer,
    ImportResultSerializer,
)
from annotation.api.streaming import export_response
from annotation.api.uploads import import_upload
from annotation.formats.records import DatasetImportError
from annotation.models import ImportRecord
from annotation.services.dataset_export import EXPORT_FORMATS, ExportRefused

PROJECT_ID = OpenApiParameter("project_id", OpenApiTypes.INT, OpenApiParameter.PATH)


class ProjectImportsView(generics.ListAPIView):
    """GET lists a project's imports (newest first); POST imports an uploaded dataset."""

    serializer_class = ImportRecordSerializer
    parser_classes = [MultiPartParser, FormParser]

    def project(self):
        return project_for_admin(self.request.user, self.kwargs["project_id"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no project
            return ImportRecord.objects.none()
        return self.project().imports.select_related("created_by").order_by("-started_at", "-id")

    @extend_schema(
        operation_id="project_imports_list",
        description="The project's imports, newest first: format, source, status, counts, who ran it.",
        parameters=[PROJECT_ID],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="project_imports_create",
        description=(
            "Import an uploaded dataset (all or nothing). For folder formats (mathv) upload a zip of the "
            "folder. Bad input gives 400 naming the file, line and field, and changes nothing."
        ),
        parameters=[PROJECT_ID],
        request={"multipart/form-data": ImportRequestSerializer},
        responses={201: ImportResultSerializer, 400: ImportErrorSerializer},
    )
    def post(self, request, project_id: int):
        project = self.project()
        form = ImportRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            result = import_upload(
                project=project,
                format_name=data["format"],
                upload=data["file"],
                images=data.get("images"),
                options=data.get("options") or {},
                user=request.user,
            )
        except DatasetImportError as exc:
            body = {"error": exc.message, "file": exc.file, "line": exc.line, "field": exc.field}
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response({"import_id": result.import_id, **result.as_dict()}, status=status.HTTP_201_CREATED)


class _AnyAccept(BaseContentNegotiation):
    """Downloads are files whatever the client accepts; errors still render as JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ProjectExportView(APIView):
    """Download a project in an export format, streamed as it is written."""

    content_negotiation_class = _AnyAccept

    @extend_schema(
        operation_id="project_export",
        parameters=[
            PROJECT_ID,
            OpenApiParameter("format_name", OpenApiTypes.STR, OpenApiParameter.PATH, enum=sorted(EXPORT_FORMATS)),
            ExportQuerySerializer,
        ],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The data file, or a zip of it and images.zip with ?images=1."
            )
        },
    )
    def get(self, request, project_id: int, format_name: str):
        project = project_for_admin(request.user, project_id)
        if format_name not in EXPORT_FORMATS:
            raise Http404(f"No export format {format_name!r}.")
        query = ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            return export_response(
                project=project,
                format_name=format_name,
                filters=query.filters(),
                with_images=query.validated_data["images"],
                options={"neutral": query.validated_data["neutral"]},
                file_format=query.validated_data.get("file_format"),
            )
        except ExportRefused as exc:
            raise ValidationError({"file_format": [str(exc)]}) from None
