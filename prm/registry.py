"""The PRM registry: evaluate versions, gate promotion to "live", promote and roll back by hand.

At most one version per project is live (a database constraint); every change of the live pointer
takes the project's version rows FOR UPDATE, so racing promotions serialise, and records a
PromotionDecision (refusals too). A candidate and the live version are compared on the SAME
held-out set: when the live version's last evaluation used another one, it is evaluated again.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from annotation.access import can_administer
from annotation.models import Project
from prm.evaluation import (
    CHANCE_MACRO_F1,
    HELD_OUT_SPLIT,
    HeldOutSet,
    evaluation_create,
    version_held_out_set,
)
from prm.models import Evaluation, PRMVersion, PromotionDecision

DEFAULT_MARGIN = 0.01


class RegistryError(ValueError):
    """A registry action that cannot be done (nothing to roll back to, a version of another project, ...)."""


def retraining_task_name(project: Project) -> str:
    """Name of the project's django-celery-beat PeriodicTask (prm.schedule); its kwargs may set "margin"."""
    return f"prm-retrain-project-{project.pk}"


def promotion_margin(project: Project) -> float:
    """The project's margin: its retraining schedule's "margin", else STEPMARK_PRM_PROMOTION_MARGIN, else 0.01."""
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.filter(name=retraining_task_name(project)).only("kwargs").first()
    if task is not None:
        margin = json.loads(task.kwargs or "{}").get("margin")
        if margin is not None:
            return float(margin)
    return float(getattr(settings, "STEPMARK_PRM_PROMOTION_MARGIN", DEFAULT_MARGIN))


def latest_evaluation(version: PRMVersion) -> Evaluation | None:
    return version.evaluations.filter(split=HELD_OUT_SPLIT).order_by("-created_at", "-id").first()


def version_evaluate(*, version: PRMVersion, held_out: HeldOutSet | None = None) -> Evaluation:
    """Evaluate `version` on held-out gold (its own split unless given) and store the Evaluation."""
    return evaluation_create(version=version, held_out=held_out)


def comparable_evaluations(*, candidate: PRMVersion, live: PRMVersion | None) -> tuple[Evaluation, Evaluation | None]:
    """The candidate's held-out evaluation and the live version's on the same set (evaluating as needed)."""
    held_out = version_held_out_set(candidate)
    fingerprint = held_out.fingerprint()
    candidate_eval = latest_evaluation(candidate)
    if candidate_eval is None or candidate_eval.metrics.get("fingerprint") != fingerprint:
        candidate_eval = version_evaluate(version=candidate, held_out=held_out)
    if live is None:
        return candidate_eval, None
    live_eval = live.evaluations.filter(split=HELD_OUT_SPLIT, metrics__fingerprint=fingerprint).order_by("-id").first()
    if live_eval is None:
        live_eval = version_evaluate(version=live, held_out=held_out)
    return candidate_eval, live_eval


def _locked_versions(project: Project) -> list[PRMVersion]:
    return list(PRMVersion.objects.select_for_update().filter(project=project).order_by("id"))


def _make_live(version: PRMVersion, previous: PRMVersion | None) -> None:
    # Retire first: the one-live-per-project constraint holds after every statement.
    if previous is not None and previous.pk != version.pk:
        PRMVersion.objects.filter(pk=previous.pk).update(status=PRMVersion.Status.RETIRED)
    now = timezone.now()
    PRMVersion.objects.filter(pk=version.pk).update(status=PRMVersion.Status.LIVE, promoted_at=now)
    version.status, version.promoted_at = PRMVersion.Status.LIVE, now


def version_promote_if_better(*, version: PRMVersion, margin: float | None = None) -> PromotionDecision:
    """Make the candidate live only if its held-out macro F1 beats the live version's by >= margin
    (or, with no live version, beats chance); otherwise it stays a candidate. Always recorded."""
    project = version.project
    margin = promotion_margin(project) if margin is None else margin
    for _ in range(3):  # the live version may change while we evaluate; then compare again
        live = PRMVersion.objects.filter(project=project, status=PRMVersion.Status.LIVE).first()
        candidate_eval, live_eval = comparable_evaluations(candidate=version, live=live)
        with transaction.atomic():
            locked = {v.pk: v for v in _locked_versions(project)}
            current_live = next((v for v in locked.values() if v.status == PRMVersion.Status.LIVE), None)
            if getattr(current_live, "pk", None) != getattr(live, "pk", None):
                continue
            return _decide(version=locked[version.pk], live=current_live, candidate_eval=candidate_eval,
                           live_eval=live_eval, margin=margin)
    raise RegistryError("the live version kept changing during the comparison; try again")


def _decide(*, version: PRMVersion, live: PRMVersion | None, candidate_eval: Evaluation,
            live_eval: Evaluation | None, margin: float) -> PromotionDecision:
    candidate_f1 = candidate_eval.metrics.get("macro_f1")
    live_f1 = live_eval.metrics.get("macro_f1") if live_eval else None
    gold_steps = candidate_eval.metrics.get("gold_steps", 0)
    promote = False
    if version.status != PRMVersion.Status.CANDIDATE:
        reason = f"{version.name} is {version.status}, not a candidate"
    elif candidate_f1 is None:
        reason = f"no held-out gold step to judge {version.name} on ({gold_steps} gold steps)"
    elif live is None:
        promote = candidate_f1 > CHANCE_MACRO_F1
        reason = (f"no live version; held-out macro F1 {candidate_f1:.4f} "
                  f"{'beats' if promote else 'does not beat'} chance ({CHANCE_MACRO_F1})")
    elif live_f1 is None:
        reason = f"live version {live.name} has no held-out macro F1 on this set; promote by hand"
    else:
        promote = candidate_f1 - live_f1 >= margin
        reason = (f"held-out macro F1 {candidate_f1:.4f} vs live {live.name} {live_f1:.4f}: "
                  f"{'gain' if promote else 'gain below margin'} {candidate_f1 - live_f1:+.4f} "
                  f"(margin {margin}) on {gold_steps} gold steps")
    if promote:
        _make_live(version, live)
    return PromotionDecision.objects.create(
        project=version.project, version=version, previous_live=live, margin=margin, reason=reason,
        action=PromotionDecision.Action.PROMOTED if promote else PromotionDecision.Action.KEPT_CANDIDATE,
        candidate_metric=candidate_f1, live_metric=live_f1,
    )


def _require_admin(user, project: Project) -> None:
    if not can_administer(user, project):
        raise PermissionDenied("Only the project's admins may change its live PRM.")


def version_promote(*, version: PRMVersion, user) -> PromotionDecision:
    """An admin makes `version` live by hand; the previous live version is retired."""
    _require_admin(user, version.project)
    with transaction.atomic():
        locked = {v.pk: v for v in _locked_versions(version.project)}
        target = locked.get(version.pk)
        if target is None:
            raise RegistryError(f"version {version.pk} is not in project {version.project}")
        live = next((v for v in locked.values() if v.status == PRMVersion.Status.LIVE), None)
        if live is not None and live.pk == target.pk:
            raise RegistryError(f"{target.name} is already live")
        _make_live(target, live)
        version.status, version.promoted_at = target.status, target.promoted_at
        return PromotionDecision.objects.create(
            project=target.project, version=target, previous_live=live, decided_by=user,
            action=PromotionDecision.Action.MANUAL_PROMOTE,
            candidate_metric=target.metrics.get("gold_macro_f1"),
            live_metric=live.metrics.get("gold_macro_f1") if live else None,
            reason=f"promoted by hand by {user}" + (f"; {live.name} retired" if live else ""),
        )


def _most_recently_retired(project: Project, locked: dict[int, PRMVersion]) -> PRMVersion | None:
    """The retired version that stopped being live last: from the decisions, else by promotion time."""
    retired = {pk: v for pk, v in locked.items() if v.status == PRMVersion.Status.RETIRED}
    if not retired:
        return None
    decisions = PromotionDecision.objects.filter(
        project=project, previous_live_id__in=list(retired),
        action__in=[PromotionDecision.Action.PROMOTED, PromotionDecision.Action.MANUAL_PROMOTE,
                    PromotionDecision.Action.ROLLBACK],
    ).order_by("-created_at", "-id").values_list("previous_live_id", flat=True)
    last = next(iter(decisions), None)
    if last is not None:
        return retired[last]
    return max(retired.values(), key=lambda v: (v.promoted_at or v.created_at, v.pk))


def version_rollback(*, project: Project, user) -> PromotionDecision:
    """An admin re-lives the most recently retired version; the current live one is retired."""
    _require_admin(user, project)
    with transaction.atomic():
        locked = {v.pk: v for v in _locked_versions(project)}
        target = _most_recently_retired(project, locked)
        if target is None:
            raise RegistryError("no retired version to roll back to")
        live = next((v for v in locked.values() if v.status == PRMVersion.Status.LIVE), None)
        _make_live(target, live)
        return PromotionDecision.objects.create(
            project=project, version=target, previous_live=live, decided_by=user,
            action=PromotionDecision.Action.ROLLBACK,
            candidate_metric=target.metrics.get("gold_macro_f1"),
            live_metric=live.metrics.get("gold_macro_f1") if live else None,
            reason=f"rolled back by {user} to {target.name}" + (f"; {live.name} retired" if live else ""),
        )


def live_version(project: Project) -> PRMVersion | None:
    return PRMVersion.objects.filter(project=project, status=PRMVersion.Status.LIVE).first()
