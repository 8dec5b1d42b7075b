"""Datasets, items, solutions, steps and their labels.

Invariants live in the database (unique and check constraints), not only here:
an import or a racing request that breaks one fails instead of storing bad data.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import ExpressionWrapper, F, Q


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Admin"


OVERSEER_ROLES = (Role.REVIEWER, Role.ADMIN)  # see machine hints and reference answers always (annotation.access)


class LabelMode(models.TextChoices):
    ALL_STEPS = "all_steps", "Label every step (VisualProcessBench)"
    FIRST_ERROR = "first_error", "Stop at the first incorrect step (PRM800K phase 2)"


# MATH-V's error analysis (arXiv 2402.14804, section 4): the kinds of mistakes models make.
DEFAULT_ERROR_CATEGORIES = (
    "visual perception",
    "reasoning",
    "knowledge",
    "calculation",
    "misunderstood question",
    "other",
)
# The category whose label may carry a free-text note.
OTHER_ERROR_CATEGORY = "other"
ERROR_CATEGORY_MAX_LENGTH = 100


def default_error_categories() -> list[str]:
    return list(DEFAULT_ERROR_CATEGORIES)


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    overlap = models.PositiveSmallIntegerField(
        default=1, help_text="How many different annotators label each solution (k)."
    )
    show_machine_labels = models.BooleanField(
        default=False, help_text="Annotators see MC and PRM hints (reviewers always do)."
    )
    show_reference_answer = models.BooleanField(default=True)
    label_mode = models.CharField(max_length=20, choices=LabelMode.choices, default=LabelMode.ALL_STEPS)
    judge_prompt = models.TextField(
        blank=True,
        default="",
        db_default="",
        help_text="The LLM judge's prompt ({question}, {steps}, {num_steps} are filled in); empty: the default.",
    )
    gold_rate = models.FloatField(
        default=0.0, help_text="Share of queue items that are hidden quality checks with adjudicated gold labels (0-1)."
    )
    error_categories_enabled = models.BooleanField(
        default=False,
        db_default=False,
        help_text="An incorrect step may carry an error category (chosen by key right after 'incorrect').",
    )
    error_categories = models.JSONField(
        default=default_error_categories,
        blank=True,
        help_text='The categories offered, in order (a JSON list of names; "other" takes a note).',
    )
    max_steps = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Imports that split responses into steps (MATH-V folders) merge longer solutions down to this "
        "many steps; empty: the site default (STEPMARK_MAX_STEPS).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="project_overlap_at_least_one"),
            models.CheckConstraint(condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="project_gold_rate_unit"),
            models.CheckConstraint(
                condition=Q(label_mode__in=[c.value for c in LabelMode]), name="project_label_mode_valid"
            ),
            models.CheckConstraint(
                condition=Q(max_steps__isnull=True) | Q(max_steps__gte=1), name="project_max_steps_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        from django.core.exceptions import ValidationError

        try:
            self.error_categories = error_categories_checked(self.error_categories)
        except ValueError as exc:
            raise ValidationError({"error_categories": str(exc)}) from None

    @property
    def offered_error_categories(self) -> list[str]:
        """The categories an annotator may choose here; none when the project does not enable them."""
        return list(self.error_categories or []) if self.error_categories_enabled else []


def error_categories_checked(categories) -> list[str]:
    """`categories` as a project stores them: a list of distinct non-empty names; ValueError says what is wrong."""
    if not isinstance(categories, list):
        raise ValueError('a JSON list of names, e.g. ["reasoning", "calculation", "other"]')
    cleaned: list[str] = []
    for position, name in enumerate(categories, start=1):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"entry {position} is not a non-empty name: {name!r}")
        name = name.strip()
        if len(name) > ERROR_CATEGORY_MAX_LENGTH:
            raise ValueError(f"entry {position} is longer than {ERROR_CATEGORY_MAX_LENGTH} characters")
        if name in cleaned:
            raise ValueError(f"entry {position} repeats {name!r}")
        cleaned.append(name)
    if len(cleaned) > 9:
        raise ValueError("at most 9 categories (they are chosen with the keys 1 to 9)")
    return cleaned


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user_per_project"),
            models.CheckConstraint(condition=Q(role__in=[c.value for c in Role]), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class Invitation(models.Model):
    """A link that lets one person join a project with a role. Only the token's SHA-256 is stored:
    the link is shown once, to the admin who made it; a leaked table holds no usable link."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)
    email = models.EmailField(blank=True, help_text="Whom it was sent to, when it was e-mailed.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=[c.value for c in Role]), name="invitation_role_valid"),
        ]

    def __str__(self) -> str:
        return f"invitation to {self.project} as {self.role}"


def image_upload_path(instance: Image, filename: str) -> str:
    # Content-addressed: one file per distinct image, fanned out by hash prefix.
    return f"images/{instance.sha256[:2]}/{instance.sha256}.{instance.format.lower()}"


class Image(models.Model):
    """An image stored once by the SHA-256 of its bytes, however many items use it."""

    sha256 = models.CharField(max_length=64, unique=True)
    file = models.FileField(upload_to=image_upload_path, max_length=200)
    format = models.CharField(max_length=10, help_text="PIL format name: PNG, JPEG, ...")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="image_dimensions_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.sha256[:12]} {self.width}x{self.height} {self.format}"


class Item(models.Model):
    """A question (with its images) inside a project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=200, help_text="Id in the source dataset; unique per project.")
    question = models.TextField()
    options = models.JSONField(default=list, blank=True)
    answer = models.TextField(blank=True, help_text="Reference answer.")
    data_source = models.CharField(max_length=200, blank=True, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    images = models.ManyToManyField(Image, through="ItemImage", related_name="items")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="item_unique_external_id_per_project"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.external_id}"


class ItemImage(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="item_images")
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="item_images")
    position = models.PositiveSmallIntegerField()
    source_path = models.CharField(
        max_length=500, blank=True, help_text="Path the source dataset used for this image (kept for export)."
    )

    class Meta:
        ordering = ["item", "position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "position"], name="itemimage_unique_position"),
        ]


class SolutionQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        _fill_project(objs)
        return super().bulk_create(objs, *args, **kwargs)


def _fill_project(solutions: list[Solution], *, refresh: bool = False) -> None:
    """Copy each solution's project from its item (one query for those whose item is not loaded)."""
    missing = [s for s in solutions if refresh or s.project_id is None]
    unloaded = {s.item_id for s in missing if not Solution.item.is_cached(s)}
    projects = dict(Item.objects.filter(pk__in=unloaded).values_list("pk", "project_id")) if unloaded else {}
    for solution in missing:
        solution.project_id = solution.item.project_id if Solution.item.is_cached(solution) else projects[solution.item_id]


class Solution(models.Model):
    """One policy model's response to an item, split into steps."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="solutions")
    # The item's project, copied so the queue has a per-project index to walk and the label save
    # needs no join through the item. Filled from the item on save and bulk_create; an item moved
    # to another project takes its solutions along (services.projects.item_save); deleted with the item.
    project = models.ForeignKey(
        Project, on_delete=models.DO_NOTHING, related_name="+", editable=False, db_index=False
    )
    key = models.CharField(
        max_length=200,
        help_text="Identity of this solution within its item (source id, or a hash of model and steps).",
    )
    policy_model = models.CharField(max_length=200, blank=True, db_index=True)
    response = models.TextField()
    final_answer = models.TextField(blank=True)
    is_correct = models.BooleanField(null=True, help_text="Outcome correctness of the final answer, when known.")
    metadata = models.JSONField(default=dict, blank=True)
    priority = models.FloatField(default=0.0, help_text="Annotation priority; higher is labelled sooner.")
    slots_taken = models.PositiveIntegerField(
        db_default=0,
        editable=False,
        help_text="Assignments holding one of the project's `overlap` slots (not skipped, not gold checks).",
    )
    # True while the queue may offer it: slots_taken < the project's overlap. Exact after a slot
    # is taken; set true when one is given back (a stale true is corrected by the next take).
    queue_open = models.BooleanField(db_default=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SolutionQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "key"], name="solution_unique_key_per_item"),
        ]
        indexes = [
            # The queue: a project's open solutions, highest priority first, then those other annotators
            # have started (with overlap k > 1 they are completed first, so agreement has data
            # early), then in import order. The statement orders by exactly these expressions.
            models.Index(
                F("project"),
                F("priority").desc(),
                ExpressionWrapper(Q(slots_taken__gt=0), output_field=models.BooleanField()).desc(),
                F("id"),
                name="solution_queue",
                condition=Q(queue_open=True),
            ),
        ]

    def save(self, *args, **kwargs):
        _fill_project([self], refresh=True)  # also after an edit moved it to another item
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"solution {self.pk} of {self.item_id} by {self.policy_model}"


class Step(models.Model):
    solution = models.ForeignKey(Solution, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveSmallIntegerField()
    text = models.TextField()

    class Meta:
        ordering = ["solution", "index"]
        constraints = [
            models.UniqueConstraint(fields=["solution", "index"], name="step_unique_index_per_solution"),
        ]

    def __str__(self) -> str:
        return f"step {self.index} of solution {self.solution_id}"


LABEL_VALUES = (-1, 0, 1)


class HumanLabel(models.Model):
    """A live annotator's judgement of one step: +1 correct, 0 neutral, -1 incorrect."""

    class Value(models.IntegerChoices):
        INCORRECT = -1, "incorrect"
        NEUTRAL = 0, "neutral"
        CORRECT = 1, "correct"

    # No index of its own: the unique (step, annotator) index serves lookups by step, and one
    # index fewer to update on every first label of a step.
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="human_labels", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="labels")
    value = models.SmallIntegerField(choices=Value.choices)
    shown_hints = models.JSONField(
        default=dict, blank=True, help_text="Machine hints the annotator saw when labelling (anchoring)."
    )
    # Why the step is incorrect, from the project's list (empty: not said); a note only with "other".
    error_category = models.CharField(max_length=ERROR_CATEGORY_MAX_LENGTH, blank=True, default="", db_default="")
    error_note = models.TextField(blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["step", "annotator"], name="humanlabel_one_per_annotator"),
            models.CheckConstraint(condition=Q(value__in=LABEL_VALUES), name="humanlabel_value_valid"),
            models.CheckConstraint(
                condition=Q(error_category="") | Q(value=-1), name="humanlabel_category_only_incorrect"
            ),
            models.CheckConstraint(
                condition=Q(error_note="") | Q(error_category=OTHER_ERROR_CATEGORY), name="humanlabel_note_only_other"
            ),
        ]


class GoldLabel(models.Model):
    """The step's reference label: adjudicated by a reviewer, or imported from a human-labelled dataset.

    Kept apart from live annotators' labels so agreement and training can tell them apart.
    """

    class Source(models.TextChoices):
        ADJUDICATED = "adjudicated", "Adjudicated by a reviewer"
        IMPORTED = "imported", "Imported human labels"

    step = models.OneToOneField(Step, on_delete=models.CASCADE, related_name="gold_label")
    value = models.SmallIntegerField(choices=HumanLabel.Value.choices)
    source = models.CharField(max_length=20, choices=Source.choices)
    origin = models.CharField(max_length=200, blank=True, help_text="Dataset name or reviewer.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(value__in=LABEL_VALUES), name="goldlabel_value_valid"),
            models.CheckConstraint(
                condition=Q(source__in=["adjudicated", "imported"]), name="goldlabel_source_valid"
            ),
        ]


class AutoLabel(models.Model):
    """A machine label of one step.

    `mc`: Monte Carlo label; `estimate` says how it was obtained. Only an exhaustive run (k
    completions for the step) or imported counts estimate mc_i: those carry `score` = num_correct /
    num_total, counts kept so value and advantage labels are derived rather than stored twice.
    Adaptive and first-error runs stop sampling on what they see (1/1 after one lucky draw), so
    they keep their counts but no score: only their value label (+1 any completion right, else -1).
    `prm`: `score` = P(+) of a PRM version. `imported`: a discrete `value` (-1/0/+1) taken from a
    dataset whose counts are unknown. `judge`: an LLM judge's `value` (-1/0/+1) with its one-sentence
    `reason`; `source` is the judge model, `prompt_version` the hash of the prompt it was given.
    """

    class Estimate(models.TextChoices):
        NONE = "", "not a Monte Carlo label"
        EXHAUSTIVE = "exhaustive", "exhaustive (k completions per step)"
        ADAPTIVE = "adaptive", "adaptive (stops at the first right completion)"
        FIRST_ERROR = "first_error", "first-error search (binary search, inferred steps)"
        IMPORTED_COUNTS = "imported_counts", "counts imported from a dataset"

    class Kind(models.TextChoices):
        MC = "mc", "Monte Carlo"
        PRM = "prm", "PRM score"
        IMPORTED = "imported", "Imported label"
        JUDGE = "judge", "LLM judge"

    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="auto_labels")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    source = models.CharField(max_length=200, help_text="Model version or dataset that produced it.")
    score = models.FloatField(null=True, blank=True)
    value = models.SmallIntegerField(null=True, blank=True, choices=HumanLabel.Value.choices)
    num_correct = models.PositiveIntegerField(null=True, blank=True)
    num_total = models.PositiveIntegerField(null=True, blank=True)
    # db_default too: bulk writers (COPY) that name their columns need not know this one.
    estimate = models.CharField(max_length=20, choices=Estimate.choices, default="", db_default="", blank=True)
    reason = models.TextField(blank=True, default="", db_default="", help_text="A judge's reason for its verdict.")
    prompt_version = models.CharField(
        max_length=20, blank=True, default="", db_default="", help_text="A judge's prompt hash (prm.core.judge)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # MC labels from a stopping rule: their counts are no estimate of mc_i and they carry no score
    # (advantage labels, thresholds, the priority queue and exports read only the others' scores).
    STOPPED_ESTIMATES = (Estimate.ADAPTIVE, Estimate.FIRST_ERROR)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["step", "kind", "source"], name="autolabel_unique_per_source"),
            models.CheckConstraint(
                condition=~Q(estimate__in=["adaptive", "first_error"]) | Q(score__isnull=True),
                name="autolabel_stopped_estimates_have_no_score",
            ),
            models.CheckConstraint(condition=Q(kind__in=["mc", "prm", "imported", "judge"]), name="autolabel_kind_valid"),
            models.CheckConstraint(
                condition=Q(value__isnull=True) | Q(value__in=LABEL_VALUES), name="autolabel_value_valid"
            ),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | (Q(score__gte=0) & Q(score__lte=1)), name="autolabel_score_unit"
            ),
            models.CheckConstraint(
                condition=Q(score__isnull=False) | Q(value__isnull=False), name="autolabel_has_score_or_value"
            ),
            models.CheckConstraint(
                condition=(Q(num_correct__isnull=True) & Q(num_total__isnull=True))
                | (Q(num_correct__isnull=False) & Q(num_total__gt=0) & Q(num_correct__lte=models.F("num_total"))),
                name="autolabel_counts_consistent",
            ),
        ]
        indexes = [models.Index(fields=["kind", "source"])]


class ImportRecord(models.Model):
    """One import run: what came in, from where, and how it ended."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    format = models.CharField(max_length=50)
    source_name = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]


class Assignment(models.Model):
    """One solution handed to one annotator. At most `project.overlap` per solution; one per person."""

    class Status(models.TextChoices):
        ASSIGNED = "assigned", "In progress"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        CANNOT_JUDGE = "cannot_judge", "Cannot judge"
        FLAGGED = "flagged", "Flagged as a bad problem"

    solution = models.ForeignKey(Solution, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ASSIGNED)
    reason = models.TextField(blank=True, help_text="Why the item was skipped, flagged or could not be judged.")
    is_gold_check = models.BooleanField(default=False, help_text="A quality-control item with known gold labels.")
    seconds_spent = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Bumped by every label change, only while open; submit finishes only the version it checked,
    # so a label cannot change after submit, nor submit miss a change made meanwhile.
    label_version = models.PositiveIntegerField(default=0, db_default=0, editable=False)

    @property
    def holds_slot(self) -> bool:
        """Counts toward the solution's overlap: skips give their slot back, gold checks take none."""
        return self.status != self.Status.SKIPPED and not self.is_gold_check

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["solution", "annotator"], name="assignment_once_per_annotator"),
            models.CheckConstraint(
                condition=Q(status__in=["assigned", "submitted", "skipped", "cannot_judge", "flagged"]),
                name="assignment_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["annotator", "status"])]


class LabelChange(models.Model):
    """Every change of a human or gold label: who, when, from, to."""

    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="label_changes")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="label_changes"
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Whose label changed; empty for the gold label.",
    )
    is_gold = models.BooleanField(default=False)
    old_value = models.SmallIntegerField(null=True, blank=True)
    new_value = models.SmallIntegerField(null=True, blank=True)
    old_category = models.CharField(max_length=ERROR_CATEGORY_MAX_LENGTH, blank=True, default="", db_default="")
    new_category = models.CharField(max_length=ERROR_CATEGORY_MAX_LENGTH, blank=True, default="", db_default="")
    new_note = models.TextField(blank=True, default="", db_default="")
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
