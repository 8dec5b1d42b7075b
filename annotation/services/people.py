"""A project's people: members and their roles, and invitations that let someone join.

Every project keeps at least one admin: the last one can be neither demoted nor removed. The
admins' rows are locked while the rule is checked, so two admins demoting each other at once
cannot both succeed.

Invitation links carry a random token (secrets.token_urlsafe, 256 bits); only its SHA-256 is
stored and looked up, so the table holds no usable link and a lookup leaks nothing by its timing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Assignment, Invitation, Membership, Project, Role
from annotation.services.assignments import assignment_delete

INVITATION_DAYS = 7
INVITATION_MAX_DAYS = 90


class PeopleError(Exception):
    """A change of the project's people that is refused; the message is for the person who asked."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class PeopleConflict(PeopleError):
    """Refused by how the project stands now (its last admin, a membership or use that exists already),
    not by a bad value: the same request may succeed once something else changes."""


class PeopleNotFound(PeopleError):
    """The membership or invitation named is not (or no longer) in this project."""


class InvitationRefused(Exception):
    """An invitation link that cannot be used: unknown, revoked, expired or used already."""

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.message = message
        self.reason = reason  # "unknown", "revoked", "expired", "used"


def _valid_role(role: str) -> str:
    if role not in Role.values:
        raise PeopleError(f"'{role}' is not a role; choose one of {', '.join(Role.values)}.", field="role")
    return role


def _find_user(identifier: str):
    """The active user with this username, or else with this e-mail address (both case-insensitive)."""
    users = get_user_model().objects.filter(is_active=True)
    identifier = identifier.strip()
    if not identifier:
        raise PeopleError("Give a username or an e-mail address.", field="user")
    by_name = list(users.filter(username__iexact=identifier)[:2])
    if len(by_name) == 1:
        return by_name[0]
    by_email = list(users.filter(email__iexact=identifier)[:2]) if "@" in identifier else []
    if len(by_email) == 1:
        return by_email[0]
    if len(by_email) > 1:
        raise PeopleError(f"Several people have the e-mail address {identifier}; give the username.", field="user")
    raise PeopleError(
        f"No one has the username or e-mail address {identifier!r}; send them an invitation instead.", field="user"
    )


def membership_add(*, project: Project, identifier: str, role: str) -> Membership:
    """Add the existing user named by username or e-mail to `project` with `role`."""
    role = _valid_role(role)
    user = _find_user(identifier)
    try:
        with transaction.atomic():
            return Membership.objects.create(project=project, user=user, role=role)
    except IntegrityError:
        current = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
        raise PeopleConflict(f"{user.username} is already a member of this project (as {current}).", field="user") from None


def _lock_admins(project_id: int) -> list[int]:
    """The ids of the project's admin memberships, locked until the transaction ends."""
    return list(
        Membership.objects.select_for_update()
        .filter(project_id=project_id, role=Role.ADMIN)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _membership_locked(project: Project, membership_id: int) -> Membership:
    membership = (
        Membership.objects.select_for_update().select_related("user").filter(pk=membership_id, project=project).first()
    )
    if membership is None:
        raise PeopleNotFound("That person is not a member of this project (any more).")
    return membership


def membership_role_set(*, project: Project, membership_id: int, role: str) -> Membership:
    """Give a member another role; the project's last admin keeps the admin role."""
    role = _valid_role(role)
    with transaction.atomic():
        admins = _lock_admins(project.pk)
        membership = _membership_locked(project, membership_id)
        if membership.role == Role.ADMIN and role != Role.ADMIN and admins == [membership.pk]:
            raise PeopleConflict(
                f"{membership.user.username} is the project's only admin: make someone else an admin first.",
                field="role",
            )
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def membership_remove(*, project: Project, membership_id: int) -> Membership:
    """Remove a member; their open assignments go back to the queue, their submitted labels stay.

    The project's last admin cannot be removed.
    """
    with transaction.atomic():
        admins = _lock_admins(project.pk)
        membership = _membership_locked(project, membership_id)
        if membership.role == Role.ADMIN and admins == [membership.pk]:
            raise PeopleConflict(
                f"{membership.user.username} is the project's only admin: make someone else an admin first."
            )
        open_ids = Assignment.objects.filter(
            solution__project_id=project.pk, annotator_id=membership.user_id, status=Assignment.Status.ASSIGNED
        ).values_list("pk", flat=True)
        assignment_delete(assignment_ids=list(open_ids))
        membership.delete()
    return membership


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    token: str  # shown once: only its hash is stored


def invitation_create(
    *, project: Project, role: str, created_by, email: str = "", days: int = INVITATION_DAYS
) -> NewInvitation:
    """A new invitation to `project` with `role`, valid for `days` days."""
    role = _valid_role(role)
    if not 1 <= days <= INVITATION_MAX_DAYS:
        raise PeopleError(f"An invitation is valid for 1 to {INVITATION_MAX_DAYS} days.", field="days")
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        project=project,
        role=role,
        email=email.strip(),
        token_hash=_token_hash(token),
        created_by=created_by,
        expires_at=timezone.now() + timedelta(days=days),
    )
    return NewInvitation(invitation=invitation, token=token)


def invitation_send(*, invitation: Invitation, link: str) -> None:
    """E-mail the link to the invitation's address through Django's mail settings."""
    if not invitation.email:
        raise PeopleError("This invitation has no e-mail address to send it to.", field="email")
    inviter = invitation.created_by.get_username() if invitation.created_by else "An admin"
    send_mail(
        subject=f"You are invited to {invitation.project.name} on Stepmark",
        message=(
            f"{inviter} invites you to join the Stepmark project {invitation.project.name} "
            f"as {invitation.get_role_display().lower()}.\n\n"
            f"Open this link to choose a username and password, or to accept with the account you have:\n{link}\n\n"
            f"The link works once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
    )


@dataclass(frozen=True)
class Delivery:
    sent_to: str  # the address the link was e-mailed to; "" when it was not
    error: str | None = None  # why the e-mail could not be sent (the link works all the same)


def invitation_deliver(*, invitation: Invitation, link: str) -> Delivery:
    """E-mail the link when the invitation has an address; a mail server that refuses or cannot be
    reached is said, not raised, since the link works without the e-mail."""
    if not invitation.email:
        return Delivery(sent_to="")
    try:
        invitation_send(invitation=invitation, link=link)
    except OSError as error:
        return Delivery(sent_to="", error=f"The e-mail to {invitation.email} could not be sent ({error}); "
                                          "pass the link on yourself.")
    return Delivery(sent_to=invitation.email)


def invitation_revoke(*, project: Project, invitation_id: int) -> Invitation:
    """Revoke an unused invitation of `project`; its link stops working."""
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().filter(pk=invitation_id, project=project).first()
        if invitation is None:
            raise PeopleNotFound("No such invitation in this project.")
        if invitation.accepted_at is not None:
            raise PeopleConflict("This invitation was accepted already; remove the member instead.")
        if invitation.revoked_at is None:
            invitation.revoked_at = timezone.now()
            invitation.save(update_fields=["revoked_at"])
    return invitation


def invitation_state(invitation: Invitation) -> str:
    """"open", "used", "revoked" or "expired"."""
    if invitation.accepted_at is not None:
        return "used"
    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.expires_at <= timezone.now():
        return "expired"
    return "open"


_REFUSALS = {
    "used": "This invitation link was used already. Log in with the account that accepted it.",
    "revoked": "This invitation was revoked by the project's admin. Ask them for a new one.",
    "expired": "This invitation link has expired. Ask the project's admin for a new one.",
}


def invitation_for_token(*, token: str, lock: bool = False) -> Invitation:
    """The open invitation this token opens; InvitationRefused names why it cannot be used."""
    query = Invitation.objects.select_related("project")
    if lock:
        query = query.select_for_update(of=("self",))
    invitation = query.filter(token_hash=_token_hash(token)).first() if token else None
    if invitation is None:
        raise InvitationRefused(
            "This invitation link is not valid. Check that you copied all of it.", reason="unknown"
        )
    state = invitation_state(invitation)
    if state != "open":
        raise InvitationRefused(_REFUSALS[state], reason=state)
    return invitation


def _use(invitation: Invitation, user) -> Membership:
    if Membership.objects.filter(project=invitation.project, user=user).exists():
        raise PeopleError(f"You are a member of {invitation.project.name} already.")
    membership = Membership.objects.create(project=invitation.project, user=user, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def invitation_accept(*, token: str, user) -> Membership:
    """A signed-in person joins the invitation's project with its role; the link is used up."""
    with transaction.atomic():
        invitation = invitation_for_token(token=token, lock=True)
        return _use(invitation, user)


def invitation_accept_new_user(*, token: str, username: str, password: str):
    """Create an account with this username and password and join the invitation's project.

    The password goes through Django's password validators; a taken username is refused.
    """
    user_model = get_user_model()
    username = user_model.normalize_username(username.strip())
    with transaction.atomic():
        invitation = invitation_for_token(token=token, lock=True)
        if not username:
            raise PeopleError("Choose a username.", field="username")
        if user_model.objects.filter(Q(username__iexact=username)).exists():
            raise PeopleError(f"The username {username} is taken; choose another.", field="username")
        user = user_model(username=username, email=invitation.email)
        password_validation.validate_password(password, user)  # ValidationError: the form shows its messages
        user.set_password(password)
        try:
            with transaction.atomic():  # a savepoint: someone may take the name at the same moment
                user.save()
        except IntegrityError:
            raise PeopleError(f"The username {username} is taken; choose another.", field="username") from None
        _use(invitation, user)
    return user
