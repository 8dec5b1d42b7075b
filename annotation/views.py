"""Server-rendered pages. Views parse input, call a selector or service, and render."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotation.access import can_create_project
from annotation.progress import user_project_summaries


@login_required
def home(request: HttpRequest) -> HttpResponse:
    context = {"projects": user_project_summaries(user=request.user), "can_create_project": can_create_project(request.user)}
    return render(request, "annotation/home.html", context)
