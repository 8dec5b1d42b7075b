"""One answer, for every page and API call, when a job was saved but the broker could not be reached."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect

from workers.services import QueueUnavailable


class QueueUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, QueueUnavailable):
            return None
        if request.path.startswith("/api/"):
            return JsonResponse(
                {"detail": str(exception), "code": "queue_unavailable", "job": exception.job_id}, status=503
            )
        messages.error(request, str(exception))
        project_id = request.resolver_match.kwargs.get("project_id") if request.resolver_match else None
        return redirect("jobs", project_id=project_id) if project_id else redirect("/")
