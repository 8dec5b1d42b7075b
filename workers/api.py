"""REST endpoints of jobs: list a project's jobs, start an export (every option of the jobs page's form), re-queue
or retry a job. Project admins only.

A broker that is down answers 503 with code "queue_unavailable" (workers.middleware); the job stays saved.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import project_for_admin
from workers.export_services import EXPORT_FLAGS, export_job_start
from workers.forms import ExportJobForm
from workers.models import Job
from workers.selectors import project_job, project_jobs
from workers.services import job_requeue

PROJECT_ID = OpenApiParameter("project_id", OpenApiTypes.INT, OpenApiParameter.PATH)
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.INT, OpenApiParameter.PATH)


class JobSerializer(serializers.ModelSerializer):
    unsent_chunks = serializers.IntegerField(read_only=True, help_text="Chunks that never reached the broker.")

    class Meta:
        model = Job
        fields = ["id", "kind", "status", "params", "progress_done", "progress_total", "counts", "error",
                  "unsent_chunks", "created_at", "started_at", "finished_at"]


class ExportJobRequestSerializer(serializers.Serializer):
    """The request's schema only: it is checked by the jobs page's export form (workers.forms.ExportJobForm),
    so the page and the API accept exactly the same options with the same rules and messages."""

    format = serializers.CharField(help_text="visualprocessbench, visualprm400k, visualprm400k-raw or trl-stepwise")
    file_format = serializers.CharField(required=False, help_text="jsonl or parquet (trl-stepwise); blank: the format's default")
    neutral = serializers.CharField(required=False, help_text="positive, negative or skip")
    images_zip = serializers.BooleanField(required=False, help_text="an images zip beside a JSON-lines file")
    label_source = serializers.CharField(required=False, help_text="merged (default), gold, human, mc, auto, prm, judge, none")
    flags = serializers.ListField(child=serializers.CharField(), required=False,
                                  help_text=f"any of {', '.join(EXPORT_FLAGS)} (each may also be given as a boolean field)")
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    mc_label = serializers.CharField(required=False, help_text="value (default) or advantage")
    mc_threshold = serializers.FloatField(required=False)
    advantage_tolerance = serializers.FloatField(required=False)
    consensus_filter = serializers.BooleanField(required=False)
    judge_first = serializers.BooleanField(required=False)
    judge_source = serializers.CharField(required=False)
    training_run = serializers.IntegerField(required=False, help_text="a training run of the project: its recorded merge policy")


EXPORT_REQUEST_FIELDS = frozenset(ExportJobRequestSerializer().fields) | set(EXPORT_FLAGS)


def export_form_data(data) -> dict:
    """The request as the export form's data; ValueError names a field the API does not know or a bad flag."""
    if not isinstance(data, dict):
        raise ValueError("send a JSON object of export options")
    unknown = sorted(set(data) - EXPORT_REQUEST_FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {', '.join(unknown)}; known: {', '.join(sorted(EXPORT_REQUEST_FIELDS))}")
    form_data = {name: value for name, value in data.items() if name != "flags" and value is not None}
    flags = data.get("flags") or []
    if not isinstance(flags, list) or any(flag not in EXPORT_FLAGS for flag in flags):
        raise ValueError(f"flags must be a list of {', '.join(EXPORT_FLAGS)}, not {flags!r}")
    form_data.update({flag: True for flag in flags})
    return form_data


def form_errors_detail(form) -> str:
    return "; ".join(f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
                     for field, messages in form.errors.items())


class ProjectJobsView(APIView):
    @extend_schema(operation_id="project_jobs_list", parameters=[PROJECT_ID], responses=JobSerializer(many=True))
    def get(self, request, project_id: int):
        project = project_for_admin(request.user, project_id)
        return Response(JobSerializer(project_jobs(project=project), many=True).data)

    @extend_schema(operation_id="project_export_job_create", parameters=[PROJECT_ID], request=ExportJobRequestSerializer,
                   responses={201: JobSerializer})
    def post(self, request, project_id: int):
        project = project_for_admin(request.user, project_id)
        try:
            form = ExportJobForm(export_form_data(request.data), project=project)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        if not form.is_valid():
            errors = {field: [str(message) for message in messages] for field, messages in form.errors.items()}
            return Response({"detail": form_errors_detail(form), "errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        try:
            job = export_job_start(project=project, user=request.user, **form.start_kwargs())
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(JobSerializer(project_job(project=project, job_id=job.pk)).data, status=status.HTTP_201_CREATED)


class JobRequeueView(APIView):
    @extend_schema(operation_id="project_job_requeue", parameters=[PROJECT_ID, JOB_ID], request=None,
                   responses=JobSerializer)
    def post(self, request, project_id: int, job_id: int):
        project = project_for_admin(request.user, project_id)
        job = project_job(project=project, job_id=job_id)
        try:
            job_requeue(job=job)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(project_job(project=project, job_id=job.pk)).data)
