"""REST endpoints of jobs: list a project's jobs, start an export, re-queue or retry a job. Project admins only.

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
    format = serializers.CharField()
    label_source = serializers.CharField(default="merged")
    flags = serializers.ListField(child=serializers.ChoiceField(choices=EXPORT_FLAGS), default=list)


class ProjectJobsView(APIView):
    @extend_schema(operation_id="project_jobs_list", parameters=[PROJECT_ID], responses=JobSerializer(many=True))
    def get(self, request, project_id: int):
        project = project_for_admin(request.user, project_id)
        return Response(JobSerializer(project_jobs(project=project), many=True).data)

    @extend_schema(operation_id="project_export_job_create", parameters=[PROJECT_ID], request=ExportJobRequestSerializer,
                   responses={201: JobSerializer})
    def post(self, request, project_id: int):
        project = project_for_admin(request.user, project_id)
        query = ExportJobRequestSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        try:
            job = export_job_start(project=project, format_name=data["format"], label_source=data["label_source"],
                                   flags=set(data["flags"]), user=request.user)
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
