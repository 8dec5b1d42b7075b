"""A project's people over REST, for admins who script setting up a team: members (add, change a role,
remove) and invitations (make, list, revoke).

The same services as the members page (annotation/services/people.py), parsed by the page's own
forms, so the API and the page accept the same values with the same messages and keep the same
rules (the last admin can be neither demoted nor removed). Outsiders are told the project does not
exist (404); members who are not its admins get 403. A refusal answers {"detail", "field"}: 400 for
a bad value (`field` names it), 409 where the project's current state refuses (the last admin, an
existing member, a used invitation), 404 for a membership or invitation that is not this project's.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import project_for_admin
from annotation.forms import InvitationForm, MemberAddForm, MemberRoleForm
from annotation.models import Invitation, Membership, Role
from annotation.services.people import (
    INVITATION_DAYS,
    INVITATION_MAX_DAYS,
    Delivery,
    PeopleConflict,
    PeopleError,
    PeopleNotFound,
    invitation_create,
    invitation_deliver,
    invitation_revoke,
    invitation_state,
    membership_add,
    membership_remove,
    membership_role_set,
)

PROJECT_ID = OpenApiParameter("project_id", OpenApiTypes.INT, OpenApiParameter.PATH)
MEMBERSHIP_ID = OpenApiParameter("membership_id", OpenApiTypes.INT, OpenApiParameter.PATH)
INVITATION_ID = OpenApiParameter("invitation_id", OpenApiTypes.INT, OpenApiParameter.PATH)
INVITATION_STATES = ["open", "used", "revoked", "expired"]  # what invitation_state answers


# --- shapes -----------------------------------------------------------------------------------


class PeopleErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What was refused; for a bad value it starts with the field's name.")
    field = serializers.CharField(allow_null=True, help_text="The request field at fault; null when none is.")


BAD_REQUEST = OpenApiResponse(PeopleErrorSerializer, description="A field is missing or invalid; `field` names it.")
NOT_FOUND = OpenApiResponse(
    PeopleErrorSerializer, description="No such project for me, or no such membership or invitation in it."
)


def _conflict(what: str) -> OpenApiResponse:
    return OpenApiResponse(PeopleErrorSerializer, description=f"Refused as the project stands: {what}.")


class MembershipSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user_id", "username", "email", "role", "created_at"]
        read_only_fields = fields


class InvitationSerializer(serializers.ModelSerializer):
    """An invitation as the members page lists it. Never its token or the token's hash."""

    state = serializers.ChoiceField(choices=INVITATION_STATES, read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    accepted_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "role", "email", "state", "created_by", "created_at", "expires_at", "accepted_by",
                  "accepted_at", "revoked_at"]
        read_only_fields = fields


class NewInvitationSerializer(InvitationSerializer):
    link = serializers.CharField(read_only=True, help_text="The invitation link. Shown this once: only a hash is kept.")
    token = serializers.CharField(read_only=True, help_text="The link's token (its last part). Shown this once.")
    sent_to = serializers.CharField(read_only=True, help_text="The address the link was e-mailed to; empty if none.")
    send_error = serializers.CharField(
        read_only=True, allow_null=True, help_text="Why the e-mail could not be sent (the link works all the same)."
    )

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "link", "token", "sent_to", "send_error"]
        read_only_fields = fields


class MemberAddRequestSerializer(serializers.Serializer):
    """The request's schema only: it is checked by the members page's form (MemberAddForm)."""

    user = serializers.CharField(help_text="The username or e-mail address of a person with an account.")
    role = serializers.ChoiceField(choices=Role.choices)


class MemberRoleRequestSerializer(serializers.Serializer):
    """The request's schema only: it is checked by the members page's form (MemberRoleForm)."""

    role = serializers.ChoiceField(choices=Role.choices)


class InvitationRequestSerializer(serializers.Serializer):
    """The request's schema only: it is checked by the members page's form (InvitationForm)."""

    role = serializers.ChoiceField(choices=Role.choices)
    email = serializers.EmailField(required=False, allow_blank=True, help_text="Whom the invitation is for.")
    days = serializers.IntegerField(
        required=False, min_value=1, max_value=INVITATION_MAX_DAYS, help_text=f"How long the link works (default {INVITATION_DAYS})."
    )
    send = serializers.BooleanField(
        required=False, help_text="E-mail the link to `email` (default true, as the members page does; needs `email`)."
    )


# --- parsing and answering ----------------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, message: str, field: str | None):
        super().__init__(message)
        self.response = Response({"detail": message, "field": field}, status=status.HTTP_400_BAD_REQUEST)


def _body(request, fields: list[str]) -> dict:
    """The request body as a dict of the known `fields`; _BadRequest for anything else.

    Read after the access check, so outsiders learn nothing from what they send.
    """
    data = request.data
    if not isinstance(data, dict):
        raise _BadRequest(f"Send a JSON object with the fields {', '.join(fields)}.", None)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _BadRequest(f"{unknown[0]}: not a field of this request; the fields are {', '.join(fields)}.", unknown[0])
    return dict(data.items())


def _valid(form) -> dict:
    if not form.is_valid():
        errors = form.errors
        first = next(iter(errors))
        detail = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
        raise _BadRequest(detail, None if first == "__all__" else first)
    return form.cleaned_data


def _refused(error: PeopleError) -> Response:
    """A service's refusal: 404 for what is not this project's, 409 for its state, 400 for a bad value."""
    if isinstance(error, PeopleNotFound):
        code = status.HTTP_404_NOT_FOUND
    elif isinstance(error, PeopleConflict):
        code = status.HTTP_409_CONFLICT
    else:
        code = status.HTTP_400_BAD_REQUEST
    detail = f"{error.field}: {error.message}" if error.field and code == status.HTTP_400_BAD_REQUEST else error.message
    return Response({"detail": detail, "field": error.field}, status=code)


def _send_flag(value) -> bool:
    try:
        return serializers.BooleanField().to_internal_value(value)
    except serializers.ValidationError:
        raise _BadRequest(f"send: {value!r} is not true or false.", "send") from None


# --- members ----------------------------------------------------------------------------------


class ProjectMembersView(APIView):
    @extend_schema(
        operation_id="project_members_list",
        description="The project's members by username: membership id, user, role and when they joined. Admins only.",
        parameters=[PROJECT_ID],
        responses={200: MembershipSerializer(many=True)},
    )
    def get(self, request, project_id: int):
        project = project_for_admin(request.user, project_id)
        memberships = Membership.objects.filter(project=project).select_related("user").order_by("user__username")
        return Response(MembershipSerializer(memberships, many=True).data)

    @extend_schema(
        operation_id="project_member_add",
        description="Add a person who has an account, named by username or e-mail address, with a role.",
        parameters=[PROJECT_ID],
        request=MemberAddRequestSerializer,
        responses={201: MembershipSerializer, 400: BAD_REQUEST, 404: NOT_FOUND, 409: _conflict("already a member")},
    )
    def post(self, request, project_id: int):
        project = project_for_admin(request.user, project_id)
        try:
            data = _valid(MemberAddForm(_body(request, ["user", "role"])))
        except _BadRequest as bad:
            return bad.response
        try:
            membership = membership_add(project=project, identifier=data["user"], role=data["role"])
        except PeopleError as error:
            return _refused(error)
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


class ProjectMemberView(APIView):
    @extend_schema(
        operation_id="project_member_role_set",
        description="Give a member another role (`role` is required). The project's last admin keeps the admin role (409).",
        parameters=[PROJECT_ID, MEMBERSHIP_ID],
        request=MemberRoleRequestSerializer,
        responses={200: MembershipSerializer, 400: BAD_REQUEST, 404: NOT_FOUND, 409: _conflict("its only admin")},
    )
    def patch(self, request, project_id: int, membership_id: int):
        project = project_for_admin(request.user, project_id)
        try:
            data = _valid(MemberRoleForm(_body(request, ["role"])))
        except _BadRequest as bad:
            return bad.response
        try:
            membership = membership_role_set(project=project, membership_id=membership_id, role=data["role"])
        except PeopleError as error:
            return _refused(error)
        return Response(MembershipSerializer(membership).data)

    @extend_schema(
        operation_id="project_member_remove",
        description=(
            "Remove a member: their open assignments go back to the queue, their submitted labels stay. "
            "The project's last admin cannot be removed (409)."
        ),
        parameters=[PROJECT_ID, MEMBERSHIP_ID],
        responses={204: None, 404: NOT_FOUND, 409: _conflict("its only admin")},
    )
    def delete(self, request, project_id: int, membership_id: int):
        project = project_for_admin(request.user, project_id)
        try:
            membership_remove(project=project, membership_id=membership_id)
        except PeopleError as error:
            return _refused(error)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- invitations ------------------------------------------------------------------------------


class ProjectInvitationsView(APIView):
    @extend_schema(
        operation_id="project_invitations_list",
        description="The project's invitations, newest first, with their state. Their links are never shown again.",
        parameters=[PROJECT_ID],
        responses={200: InvitationSerializer(many=True)},
    )
    def get(self, request, project_id: int):
        project = project_for_admin(request.user, project_id)
        invitations = list(Invitation.objects.filter(project=project).select_related("created_by", "accepted_by"))
        for invitation in invitations:
            invitation.state = invitation_state(invitation)
        return Response(InvitationSerializer(invitations, many=True).data)

    @extend_schema(
        operation_id="project_invitation_create",
        description=(
            "Make an invitation link with a role, valid for `days` days (7 by default). Given an `email`, the "
            "link is e-mailed to it unless `send` is false. The answer holds the link and its token: the only "
            "time they are shown, as only a hash is stored."
        ),
        parameters=[PROJECT_ID],
        request=InvitationRequestSerializer,
        responses={201: NewInvitationSerializer, 400: BAD_REQUEST, 404: NOT_FOUND},
    )
    def post(self, request, project_id: int):
        project = project_for_admin(request.user, project_id)
        try:
            body = _body(request, ["role", "email", "days", "send"])
            raw_send = body.pop("send", None)
            send = True if raw_send is None else _send_flag(raw_send)
            if body.get("days") is None:
                body["days"] = INVITATION_DAYS
            data = _valid(InvitationForm(body))
        except _BadRequest as bad:
            return bad.response
        try:
            new = invitation_create(
                project=project, role=data["role"], email=data["email"], days=data["days"], created_by=request.user
            )
        except PeopleError as error:
            return _refused(error)
        invitation = new.invitation
        invitation.link = request.build_absolute_uri(reverse("invitation", kwargs={"token": new.token}))
        invitation.token = new.token
        delivery = invitation_deliver(invitation=invitation, link=invitation.link) if send else Delivery(sent_to="")
        invitation.sent_to, invitation.send_error = delivery.sent_to, delivery.error
        invitation.state = invitation_state(invitation)
        return Response(NewInvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


class ProjectInvitationView(APIView):
    @extend_schema(
        operation_id="project_invitation_revoke",
        description="Revoke an invitation: its link stops working. An accepted one cannot be revoked (409).",
        parameters=[PROJECT_ID, INVITATION_ID],
        responses={204: None, 404: NOT_FOUND, 409: _conflict("accepted already")},
    )
    def delete(self, request, project_id: int, invitation_id: int):
        project = project_for_admin(request.user, project_id)
        try:
            invitation_revoke(project=project, invitation_id=invitation_id)
        except PeopleError as error:
            return _refused(error)
        return Response(status=status.HTTP_204_NO_CONTENT)
