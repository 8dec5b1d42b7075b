"""Labelling and review endpoints: the same services and permissions as the pages.

Members see their projects, items and solutions and work their own assignments (another
member's assignment is 404, as on the pages); reviewers, admins and staff also review and set
gold labels (403 for annotators); outsiders are told the project does not exist (404).
"""

from __future__ import annotations

import orjson
from django.db.models import Prefetch
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import assignment_for_member, project_for_member, project_for_reviewer, project_role
from annotation.api import labelling_serializers as shapes
from annotation.labelling_reads import assignment_labels, item_images, labelling_screen
from annotation.models import Assignment, Item, Project, Solution, Step
from annotation.progress import project_summary, user_project_summaries
from annotation.review import review_queue, review_rows
from annotation.services.label_save import (
    AssignmentClosed,
    assignment_step_label_clear,
    assignment_step_label_set,
)
from annotation.services.labels import LabelRejected, gold_label_set
from annotation.services.queue import SubmitRejected, assignment_skip, next_assignment
from annotation.services.submit import member_assignment_submit

PROJECT_ID = OpenApiParameter("project_id", OpenApiTypes.INT, OpenApiParameter.PATH)
SOLUTION_ID = OpenApiParameter("solution_id", OpenApiTypes.INT, OpenApiParameter.PATH)
ASSIGNMENT_ID = OpenApiParameter("assignment_id", OpenApiTypes.INT, OpenApiParameter.PATH)
STEP_ID = OpenApiParameter("step_id", OpenApiTypes.INT, OpenApiParameter.PATH)
FINISHED = OpenApiResponse(shapes.ErrorSerializer, description="The assignment is already finished.")
BAD_REQUEST = OpenApiResponse(shapes.ErrorSerializer, description="A field is missing or invalid; `field` names it.")


def _bad_request(errors: dict) -> Response:
    field, messages = next(iter(errors.items()))
    message = messages[0] if isinstance(messages, list) and messages else messages
    return Response({"error": f"{field}: {message}", "field": field}, status=status.HTTP_400_BAD_REQUEST)


def _label_value(data):
    """The `value` of a label request body: a JSON number, or its text from a form.

    Parsed by hand rather than by LabelValueSerializer (which documents it), as this runs on every
    click; what is not a label value is passed on as it came, and the service rejects it after
    the access checks, so outsiders get 404 whatever they send.
    """
    value = data.get("value") if hasattr(data, "get") else None
    if isinstance(value, str) and value.strip() in {"-1", "0", "1"}:
        return int(value)
    return value


def _small_json(request: Request, payload: dict) -> HttpResponse:
    """`payload` (numbers and plain ASCII words only) as JSON, rendered directly for JSON clients.

    The label save and submit answer every click with a few numbers; DRF's Response would
    render the same bytes through its template-response machinery. Browsers of the browsable
    API still get its HTML page.
    """
    if isinstance(request.accepted_renderer, JSONRenderer):
        return HttpResponse(orjson.dumps(payload), content_type="application/json")
    return Response(payload)


def _finished(assignment: Assignment) -> Response:
    return _finished_status(assignment.status)


def _finished_status(assignment_status: str) -> Response:
    label = Assignment.Status(assignment_status).label.lower()
    return Response({"error": f"this item is already {label}"}, status=status.HTTP_409_CONFLICT)


def _item_payload(item: Item, request: Request, *, answer: str | None, images: list[tuple]) -> dict:
    return {
        "id": item.id,
        "external_id": item.external_id,
        "data_source": item.data_source,
        "question": item.question,
        "options": [str(option) for option in item.options or []],
        "answer": answer,
        "images": [
            {
                "position": position,
                "url": request.build_absolute_uri(reverse("image", kwargs={"sha256": sha256})),
                "width": width,
                "height": height,
            }
            for position, sha256, width, height in images
        ],
    }


def _solution_payload(solution: Solution, request: Request, project: Project) -> dict:
    """What a member sees of a solution: the labelling screen, as the page shows it."""
    return _screen_payload(labelling_screen(user=request.user, project=project, solution=solution), solution, request)


def _screen_payload(screen, solution: Solution, request: Request) -> dict:
    return {
        "id": solution.id,
        "key": solution.key,
        "policy_model": solution.policy_model,
        "item": _item_payload(screen.item, request, answer=screen.answer, images=screen.images),
        "steps": screen.steps,
    }


def _label_saved_payload(saved) -> dict:
    """LabelSavedSerializer's shape, built directly (label saves are the most frequent request)."""
    return {
        "step_id": saved.target.step_id,
        "index": saved.target.step_index,
        "value": saved.write.value,
        "missing_step_ids": saved.missing_step_ids,
    }


_TIMESTAMP = serializers.DateTimeField()  # formats as the documented serializers do


def _assignment_payload(assignment: Assignment) -> dict:
    """AssignmentSerializer's shape, built directly: next and submit run once per item per annotator.

    is_gold_check is left out on purpose: quality checks are hidden from the annotator.
    """
    finished_at = assignment.finished_at
    return {
        "id": assignment.id,
        "status": assignment.status,
        "seconds_spent": assignment.seconds_spent,
        "created_at": _TIMESTAMP.to_representation(assignment.created_at),
        "finished_at": None if finished_at is None else _TIMESTAMP.to_representation(finished_at),
    }


def _my_labels(assignment: Assignment) -> tuple[list[dict], list[int]]:
    labels, missing = assignment_labels(assignment=assignment)
    return [{"step_id": step_id, "index": index, "value": value} for step_id, index, value in labels], missing


# --- projects and their content -------------------------------------------------------------


class ProjectListView(APIView):
    @extend_schema(
        operation_id="projects_list",
        description="The projects I am a member of (staff: every project), with my role and the labelling progress.",
        responses={200: shapes.ProjectSummarySerializer(many=True)},
    )
    def get(self, request):
        summaries = user_project_summaries(user=request.user)
        return Response(shapes.ProjectSummarySerializer(summaries, many=True).data)


class ProjectDetailView(APIView):
    @extend_schema(
        operation_id="project_detail",
        description="One project: my role, progress and the project's labelling settings and guidelines.",
        parameters=[PROJECT_ID],
        responses={200: shapes.ProjectDetailSerializer},
    )
    def get(self, request, project_id: int):
        project = project_for_member(request.user, project_id)
        summary = project_summary(project=project, user=request.user, role=project_role(request.user, project))
        settings = {
            "guidelines": project.guidelines,
            "overlap": project.overlap,
            "label_mode": project.label_mode,
            "show_machine_labels": project.show_machine_labels,
            "show_reference_answer": project.show_reference_answer,
        }
        return Response(shapes.ProjectDetailSerializer({**summary, **settings}).data)


class ProjectItemsView(generics.ListAPIView):
    serializer_class = shapes.ItemListSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no project
            return Item.objects.none()
        project: Project = project_for_member(self.request.user, self.kwargs["project_id"])
        # Only the ids: solutions carry whole responses, and the list shows none of them.
        items = project.items.order_by("id").prefetch_related(
            Prefetch("solutions", queryset=Solution.objects.only("id", "item_id").order_by("id"))
        )
        data_source = self.request.query_params.get("data_source")
        if data_source is not None:
            items = items.filter(data_source=data_source)
        return items

    @extend_schema(
        operation_id="project_items_list",
        description="The project's items (paginated, by id) with their solutions' ids.",
        parameters=[
            PROJECT_ID,
            OpenApiParameter("data_source", OpenApiTypes.STR, description="Only items from this data source."),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class SolutionDetailView(APIView):
    @extend_schema(
        operation_id="project_solution_detail",
        description=(
            "A solution with its item (question, options, image URLs; the reference answer if the project "
            "shows it) and its steps (machine hints only where the project allows them, or for reviewers)."
        ),
        parameters=[PROJECT_ID, SOLUTION_ID],
        responses={200: shapes.SolutionSerializer},
    )
    def get(self, request, project_id: int, solution_id: int):
        project = project_for_member(request.user, project_id)
        solution = get_object_or_404(Solution.objects.select_related("item"), pk=solution_id, project=project)
        return Response(shapes.SolutionSerializer(_solution_payload(solution, request, project)).data)


# --- my assignments -------------------------------------------------------------------------


class NextAssignmentView(APIView):
    @extend_schema(
        operation_id="project_next_assignment",
        description=(
            "My open assignment in the project, or a new one from the queue (each solution goes to `overlap` "
            "different annotators)."
        ),
        parameters=[PROJECT_ID],
        request=None,
        responses={
            201: shapes.AssignmentWithSolutionSerializer,
            204: OpenApiResponse(description="Nothing is left for me to label in this project."),
        },
    )
    def post(self, request, project_id: int):
        project = project_for_member(request.user, project_id)
        assignment = next_assignment(project=project, annotator=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        screen = labelling_screen(user=request.user, project=project, solution=assignment.solution)
        payload = {
            "assignment": _assignment_payload(assignment),
            "solution": _screen_payload(screen, assignment.solution, request),
            "missing_step_ids": screen.missing_step_ids,
        }
        return Response(payload, status=status.HTTP_201_CREATED)  # shaped as AssignmentWithSolutionSerializer


class AssignmentLabelsView(APIView):
    @extend_schema(
        operation_id="assignment_labels",
        description="My labels of this assignment's steps (null where I have not labelled a step yet).",
        parameters=[PROJECT_ID, ASSIGNMENT_ID],
        responses={200: shapes.MyLabelsSerializer},
    )
    def get(self, request, project_id: int, assignment_id: int):
        assignment = assignment_for_member(request.user, project_id, assignment_id)
        labels, missing = _my_labels(assignment)
        payload = {
            "assignment": _assignment_payload(assignment),
            "labelled": sum(1 for label in labels if label["value"] is not None),
            "labels": labels,
            "missing_step_ids": missing,
        }
        return Response(shapes.MyLabelsSerializer(payload).data)


class AssignmentStepLabelView(APIView):
    # The request annotators make most: on PostgreSQL one statement checks access, reads the
    # hints to record and writes the label and its history (assignment_step_label_set).

    @extend_schema(
        operation_id="assignment_step_label_set",
        description="Set my label of one step. Only my own labels change; other annotators' are never touched.",
        parameters=[PROJECT_ID, ASSIGNMENT_ID, STEP_ID],
        request=shapes.LabelValueSerializer,
        responses={200: shapes.LabelSavedSerializer, 400: BAD_REQUEST, 409: FINISHED},
    )
    def put(self, request, project_id: int, assignment_id: int, step_id: int):
        try:
            saved = assignment_step_label_set(
                user=request.user,
                project_id=project_id,
                assignment_id=assignment_id,
                step_id=step_id,
                value=_label_value(request.data),
            )
        except AssignmentClosed as exc:
            return _finished_status(exc.status)
        except LabelRejected as exc:
            return Response({"error": f"value: {exc}", "field": "value"}, status=status.HTTP_400_BAD_REQUEST)
        return _small_json(request, _label_saved_payload(saved))

    @extend_schema(
        operation_id="assignment_step_label_clear",
        description="Clear my label of one step (clearing a step with no label changes nothing).",
        parameters=[PROJECT_ID, ASSIGNMENT_ID, STEP_ID],
        responses={200: shapes.LabelSavedSerializer, 409: FINISHED},
    )
    def delete(self, request, project_id: int, assignment_id: int, step_id: int):
        try:
            cleared = assignment_step_label_clear(
                user=request.user, project_id=project_id, assignment_id=assignment_id, step_id=step_id
            )
        except AssignmentClosed as exc:
            return _finished_status(exc.status)
        return _small_json(request, _label_saved_payload(cleared))


class AssignmentSubmitView(APIView):
    @extend_schema(
        operation_id="assignment_submit",
        description=(
            "Finish my assignment. Every required step needs a label (all steps, or up to the first incorrect "
            "one in first-error projects) unless `cannot_judge_reason` is given."
        ),
        parameters=[PROJECT_ID, ASSIGNMENT_ID],
        request=shapes.SubmitRequestSerializer,
        responses={
            200: shapes.AssignmentSerializer,
            400: BAD_REQUEST,
            409: FINISHED,
            422: OpenApiResponse(
                shapes.ErrorSerializer, description="Steps are missing labels; the message says which."
            ),
        },
    )
    def post(self, request, project_id: int, assignment_id: int):
        body = shapes.SubmitRequestSerializer(data=request.data)
        if not body.is_valid():
            # Outsiders learn nothing from a bad body: the access check comes first.
            assignment = assignment_for_member(request.user, project_id, assignment_id)
            if assignment.status != Assignment.Status.ASSIGNED:
                return _finished(assignment)
            return _bad_request(body.errors)
        try:
            assignment = member_assignment_submit(
                user=request.user,
                project_id=project_id,
                assignment_id=assignment_id,
                seconds_spent=body.validated_data["seconds"],
                cannot_judge_reason=body.validated_data["cannot_judge_reason"],
            )
        except AssignmentClosed as exc:
            return _finished_status(exc.status)
        except SubmitRejected as exc:
            return Response({"error": str(exc)}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        return _small_json(request, _assignment_payload(assignment))  # shaped as AssignmentSerializer


class AssignmentSkipView(APIView):
    @extend_schema(
        operation_id="assignment_skip",
        description="Skip my assignment (the item is not offered to me again), or flag the problem as broken.",
        parameters=[PROJECT_ID, ASSIGNMENT_ID],
        request=shapes.SkipRequestSerializer,
        responses={200: shapes.AssignmentSerializer, 400: BAD_REQUEST, 409: FINISHED},
    )
    def post(self, request, project_id: int, assignment_id: int):
        assignment = assignment_for_member(request.user, project_id, assignment_id)
        if assignment.status != Assignment.Status.ASSIGNED:
            return _finished(assignment)
        body = shapes.SkipRequestSerializer(data=request.data)
        if not body.is_valid():
            return _bad_request(body.errors)
        try:
            assignment_skip(
                assignment=assignment,
                reason=body.validated_data["reason"],
                flag_bad_problem=body.validated_data["flag"],
            )
        except SubmitRejected:
            return _finished(assignment)
        return Response(_assignment_payload(assignment))  # shaped as AssignmentSerializer


# --- review ---------------------------------------------------------------------------------


class ReviewQueueView(APIView):
    @extend_schema(
        operation_id="review_queue",
        description=(
            "Solutions with submitted labels where annotators disagree with each other or with the machine "
            "labels (MC, PRM). Reviewers, admins and staff."
        ),
        parameters=[PROJECT_ID, shapes.ReviewQuerySerializer],
        responses={200: shapes.ReviewCandidateSerializer(many=True)},
    )
    def get(self, request, project_id: int):
        project = project_for_reviewer(request.user, project_id)
        query = shapes.ReviewQuerySerializer(data=request.query_params)
        if not query.is_valid():
            return _bad_request(query.errors)
        candidates = review_queue(project=project, include_adjudicated=query.validated_data["include_adjudicated"])
        return Response(shapes.ReviewCandidateSerializer(candidates, many=True).data)


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


def _review_payload(solution: Solution, request: Request) -> dict:
    names, rows = review_rows(solution=solution)
    steps = []
    for row in rows:
        step, gold = row["step"], row["gold"]
        steps.append(
            {
                "id": step.id,
                "index": step.index,
                "text": step.text,
                "labels": dict(zip(names, row["labels"], strict=True)),
                "mc": row["mc"],
                "prm": row["prm"],
                "gold": None
                if gold is None
                else {
                    "value": gold.value,
                    "source": gold.source,
                    "origin": gold.origin,
                    "decided_by": _username(gold.decided_by),
                    "updated_at": gold.updated_at,
                },
                "history": [
                    {
                        "changed_by": _username(change.changed_by),
                        "annotator": _username(change.annotator),
                        "is_gold": change.is_gold,
                        "old_value": change.old_value,
                        "new_value": change.new_value,
                        "changed_at": change.changed_at,
                    }
                    for change in row["history"]
                ],
            }
        )
    return {
        "id": solution.id,
        "key": solution.key,
        "policy_model": solution.policy_model,
        "final_answer": solution.final_answer,
        "is_correct": solution.is_correct,
        "item": _item_payload(solution.item, request, answer=solution.item.answer, images=item_images(item_id=solution.item_id)),
        "annotators": names,
        "steps": steps,
    }


class ReviewSolutionView(APIView):
    @extend_schema(
        operation_id="review_solution",
        description="Every label of every step side by side: each annotator's, MC, PRM, gold, and the history.",
        parameters=[PROJECT_ID, SOLUTION_ID],
        responses={200: shapes.ReviewSolutionSerializer},
    )
    def get(self, request, project_id: int, solution_id: int):
        project = project_for_reviewer(request.user, project_id)
        solution = get_object_or_404(Solution.objects.select_related("item"), pk=solution_id, project=project)
        return Response(shapes.ReviewSolutionSerializer(_review_payload(solution, request)).data)


class ReviewGoldView(APIView):
    @extend_schema(
        operation_id="review_gold_set",
        description="Set the adjudicated gold label of one step (replaces an imported or earlier gold label).",
        parameters=[PROJECT_ID, SOLUTION_ID, STEP_ID],
        request=shapes.LabelValueSerializer,
        responses={200: shapes.GoldSerializer, 400: BAD_REQUEST},
    )
    def put(self, request, project_id: int, solution_id: int, step_id: int):
        project = project_for_reviewer(request.user, project_id)
        step = get_object_or_404(Step, pk=step_id, solution_id=solution_id, solution__project=project)
        body = shapes.LabelValueSerializer(data=request.data)
        if not body.is_valid():
            return _bad_request(body.errors)
        try:
            gold = gold_label_set(step=step, reviewer=request.user, value=body.validated_data["value"])
        except LabelRejected as exc:
            return Response({"error": str(exc), "field": "value"}, status=status.HTTP_400_BAD_REQUEST)
        payload = {
            "value": gold.value,
            "source": gold.source,
            "origin": gold.origin,
            "decided_by": _username(gold.decided_by),
            "updated_at": gold.updated_at,
        }
        return Response(shapes.GoldSerializer(payload).data)
