"""PRM versions (a registry with one live version per project), training runs and evaluations."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class TrainingRun(models.Model):
    """One training of a PRM: its resolved settings, merge policy, live progress and loss history."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="training_runs")
    job = models.OneToOneField(
        "workers.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_run"
    )
    config = models.JSONField(default=dict, help_text="The resolved TrainConfig (prm.core.training_config).")
    merge_policy = models.JSONField(default=dict, help_text="How step labels were merged (prm.core.merge.MergePolicy).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    history = models.JSONField(
        default=list, blank=True, help_text="One entry per optimizer step: step, loss, lr, tokens_per_s, time."
    )
    data_summary = models.JSONField(default=dict, blank=True, help_text="Items, solutions and labelled steps per split.")
    checkpoint_dir = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]), name="trainingrun_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"training run {self.pk} of {self.project_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.step / self.total_steps)) if self.total_steps else 0


class PRMVersion(models.Model):
    """A trained PRM on disk. Candidates are evaluated; at most one version per project is live."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        LIVE = "live"
        RETIRED = "retired"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="prm_versions")
    name = models.CharField(max_length=200, unique=True)
    backbone = models.CharField(max_length=500, help_text="Path or name of the backbone it was trained from.")
    directory = models.CharField(max_length=500, help_text="Model folder PRMScorer loads.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CANDIDATE)
    created_from = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="versions"
    )
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"], condition=Q(status="live"), name="prmversion_one_live_per_project"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["candidate", "live", "retired"]), name="prmversion_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class Evaluation(models.Model):
    """Metrics of one PRM version on one split (validation, a benchmark, ...)."""

    version = models.ForeignKey(PRMVersion, on_delete=models.CASCADE, related_name="evaluations")
    split = models.CharField(max_length=200)
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


# --- Registry decisions (prm.registry) -------------------------------------------------------------


class PromotionDecision(models.Model):
    """Every change, or refused change, of a project's live PRM: gated automatic promotion, by hand, rollback."""

    class Action(models.TextChoices):
        PROMOTED = "promoted", "Promoted: beat the live version"
        KEPT_CANDIDATE = "kept_candidate", "Kept as a candidate: did not beat the live version"
        MANUAL_PROMOTE = "manual_promote", "Promoted by hand"
        ROLLBACK = "rollback", "Rolled back"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="prm_decisions")
    action = models.CharField(max_length=20, choices=Action.choices)
    version = models.ForeignKey(
        PRMVersion, on_delete=models.CASCADE, related_name="decisions", help_text="The version judged or made live."
    )
    previous_live = models.ForeignKey(
        PRMVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The live version at the time; retired when the decision made another version live.",
    )
    candidate_metric = models.FloatField(null=True, blank=True)
    live_metric = models.FloatField(null=True, blank=True)
    margin = models.FloatField(null=True, blank=True)
    reason = models.TextField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def action_text(self) -> str:
        """The action as the page says it: "did not beat the live version" only when one was live."""
        if self.previous_live_id is None:
            if self.action == self.Action.KEPT_CANDIDATE:
                return "Kept as a candidate (there was no live version to compare it with)"
            if self.action == self.Action.PROMOTED:
                return "Promoted: the first live version (better than chance)"
        return self.get_action_display()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=["promoted", "kept_candidate", "manual_promote", "rollback"]),
                name="promotiondecision_action_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.version_id} in {self.project_id}"


class ItemSplit(models.Model):
    """The side of the training split an item is on, fixed the first time a training-set build sees it.

    An item once held out stays held out however the project grows, so no version trains on an
    item a later version is compared on (prm.training_data.split_assign).
    """

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="prm_item_splits")
    item = models.OneToOneField("annotation.Item", on_delete=models.CASCADE, related_name="prm_split")
    held_out = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "held_out"], name="itemsplit_project_held_out")]

    def __str__(self) -> str:
        return f"item {self.item_id}: {'held out' if self.held_out else 'train'}"
