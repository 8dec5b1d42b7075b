"""A project's people: the members page (add, change a role, remove), invitations, and the page an
invitation link opens. Views parse the form, call a service in annotation/services/people.py and respond."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotation.access import project_for_admin
from annotation.forms import InvitationForm, MemberAddForm, MemberRoleForm, SignupForm
from annotation.models import Invitation, Membership, Role
from annotation.services.people import (
    InvitationRefused,
    PeopleError,
    invitation_accept,
    invitation_accept_new_user,
    invitation_create,
    invitation_deliver,
    invitation_for_token,
    invitation_revoke,
    invitation_state,
    membership_add,
    membership_remove,
    membership_role_set,
)

_NEW_LINK = "stepmark_new_invitation_link"  # session key: the link just made, shown once on the members page


def _members_page(request, project, *, add_form=None, invite_form=None, status: int = 200) -> HttpResponse:
    memberships = list(
        Membership.objects.filter(project=project).select_related("user").order_by("user__username")
    )
    admins = sum(1 for m in memberships if m.role == Role.ADMIN)
    invitations = list(Invitation.objects.filter(project=project).select_related("created_by", "accepted_by")[:200])
    for invitation in invitations:
        invitation.state = invitation_state(invitation)
    new_link = request.session.pop(_NEW_LINK, None)
    new_link = new_link if new_link and new_link.get("project") == project.id else None
    return render(
        request,
        "annotation/members.html",
        {
            "project": project,
            "memberships": memberships,
            "admin_count": admins,
            "roles": Role.choices,
            "invitations": invitations,
            "add_form": add_form or MemberAddForm(),
            "invite_form": invite_form or InvitationForm(),
            "new_link": new_link,
        },
        status=status,
    )


@login_required
def members(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    return _members_page(request, project)


def _refused(request, project, error: PeopleError, **forms) -> HttpResponse:
    messages.error(request, error.message)
    return _members_page(request, project, status=400, **forms)


@login_required
@require_POST
def member_add(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        return _members_page(request, project, add_form=form, status=400)
    try:
        membership = membership_add(project=project, identifier=form.cleaned_data["user"], role=form.cleaned_data["role"])
    except PeopleError as error:
        form.add_error("user" if error.field == "user" else None, error.message)
        return _members_page(request, project, add_form=form, status=400)
    messages.success(request, f"{membership.user.username} added as {membership.get_role_display().lower()}.")
    return redirect("project-members", project_id=project.id)


@login_required
@require_POST
def member_role(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        return _refused(request, project, PeopleError("Choose a role: annotator, reviewer or admin."))
    try:
        membership = membership_role_set(project=project, membership_id=membership_id, role=form.cleaned_data["role"])
    except PeopleError as error:
        return _refused(request, project, error)
    messages.success(request, f"{membership.user.username} is now {membership.get_role_display().lower()}.")
    return redirect("project-members", project_id=project.id)


@login_required
@require_POST
def member_remove(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    try:
        membership = membership_remove(project=project, membership_id=membership_id)
    except PeopleError as error:
        return _refused(request, project, error)
    messages.success(request, f"{membership.user.username} removed from the project; their open items went back to the queue.")
    if membership.user_id == request.user.pk and not request.user.is_staff:
        return redirect("home")  # they removed themselves: the members page is not theirs any more
    return redirect("project-members", project_id=project.id)


@login_required
@require_POST
def invitation_create_view(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    form = InvitationForm(request.POST)
    if not form.is_valid():
        return _members_page(request, project, invite_form=form, status=400)
    data = form.cleaned_data
    try:
        new = invitation_create(
            project=project, role=data["role"], email=data["email"], days=data["days"], created_by=request.user
        )
    except PeopleError as error:
        form.add_error(error.field if error.field in form.fields else None, error.message)
        return _members_page(request, project, invite_form=form, status=400)
    link = request.build_absolute_uri(reverse("invitation", kwargs={"token": new.token}))
    delivery = invitation_deliver(invitation=new.invitation, link=link)
    if delivery.error:
        messages.error(request, delivery.error)
    request.session[_NEW_LINK] = {"project": project.id, "link": link, "sent_to": delivery.sent_to,
                                  "role": new.invitation.role}
    return redirect("project-members", project_id=project.id)


@login_required
@require_POST
def invitation_revoke_view(request: HttpRequest, project_id: int, invitation_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    try:
        invitation_revoke(project=project, invitation_id=invitation_id)
    except PeopleError as error:
        return _refused(request, project, error)
    messages.success(request, "Invitation revoked: its link no longer works.")
    return redirect("project-members", project_id=project.id)


def _invitation_refused(request, refusal: InvitationRefused) -> HttpResponse:
    # A clear page, never the bare 404: 410 Gone for a link that worked once, 404 for one that never did.
    status = 404 if refusal.reason == "unknown" else 410
    return render(request, "annotation/invitation.html", {"refusal": refusal}, status=status)


@require_http_methods(["GET", "POST"])
def invitation_page(request: HttpRequest, token: str) -> HttpResponse:
    """What an invitation link opens: sign up (new person) or accept (signed-in person)."""
    try:
        invitation = invitation_for_token(token=token)
    except InvitationRefused as refusal:
        return _invitation_refused(request, refusal)
    signed_in = request.user.is_authenticated
    form = None if signed_in else SignupForm(request.POST) if request.method == "POST" else SignupForm()
    error = ""
    if request.method == "POST":
        try:
            if signed_in:
                invitation_accept(token=token, user=request.user)
                user = request.user
            elif form.is_valid():
                user = invitation_accept_new_user(
                    token=token, username=form.cleaned_data["username"], password=form.cleaned_data["password1"]
                )
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            else:
                user = None
        except InvitationRefused as refusal:
            return _invitation_refused(request, refusal)
        except PeopleError as refused:
            if form is not None and refused.field in form.fields:
                form.add_error(refused.field, refused.message)
            else:
                error = refused.message
            user = None
        except ValidationError as weak:  # Django's password validators
            form.add_error("password1", weak)
            user = None
        if user is not None:
            messages.success(
                request, f"Welcome, {user.get_username()}: you joined {invitation.project.name} as {invitation.get_role_display().lower()}."
            )
            return redirect("home")
    context = {"invitation": invitation, "form": form, "error": error, "token": token}
    return render(request, "annotation/invitation.html", context, status=400 if request.method == "POST" else 200)
