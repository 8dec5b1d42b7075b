"""Request and response shapes of the labelling and review endpoints.

Responses are plain dicts built in annotation.api.labelling from the same selectors the pages
use; these serializers render them and describe them in the OpenAPI schema.
"""

from __future__ import annotations

from rest_framework import serializers

from annotation.models import LABEL_VALUES, Assignment, GoldLabel, Item, Role

LABEL_HELP = "1 correct, 0 neutral, -1 incorrect."
SIX_HOURS = 6 * 3600


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    field = serializers.CharField(required=False, help_text="The request field at fault, for a bad request.")


# --- projects and their content -------------------------------------------------------------


class ProjectSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    role = serializers.ChoiceField(
        choices=Role.choices, allow_null=True, help_text="My role; null for staff who are not members."
    )
    solutions = serializers.IntegerField()
    steps = serializers.IntegerField()
    labelled_steps = serializers.IntegerField(help_text="Steps with at least one human label.")
    my_steps = serializers.IntegerField(help_text="Steps I have labelled.")
    my_today = serializers.IntegerField(help_text="Steps I have labelled today.")


class ProjectDetailSerializer(ProjectSummarySerializer):
    guidelines = serializers.CharField(help_text="Markdown.")
    overlap = serializers.IntegerField()
    label_mode = serializers.CharField()
    show_machine_labels = serializers.BooleanField()
    show_reference_answer = serializers.BooleanField()
    error_categories = serializers.ListField(
        child=serializers.CharField(),
        help_text="The error categories an incorrect step may carry here, in order; empty: the project uses none.",
    )


class ImageLinkSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    url = serializers.URLField(help_text="The image page (/images/<sha256>/), for members of the project.")
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class ItemListSerializer(serializers.ModelSerializer):
    solution_ids = serializers.PrimaryKeyRelatedField(many=True, read_only=True, source="solutions")

    class Meta:
        model = Item
        fields = ["id", "external_id", "data_source", "question", "solution_ids"]
        read_only_fields = fields


class ItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    data_source = serializers.CharField()
    question = serializers.CharField()
    options = serializers.ListField(child=serializers.CharField())
    answer = serializers.CharField(allow_null=True, help_text="Null when the project hides the reference answer.")
    images = ImageLinkSerializer(many=True)


class McHintSerializer(serializers.Serializer):
    score = serializers.FloatField(allow_null=True, help_text="Share of completions from this prefix that were right.")
    right = serializers.IntegerField(allow_null=True)
    total = serializers.IntegerField(allow_null=True)
    source = serializers.CharField()


class PrmHintSerializer(serializers.Serializer):
    score = serializers.FloatField(allow_null=True, help_text="P(+) of the PRM version named by source.")
    source = serializers.CharField()


class JudgeHintSerializer(serializers.Serializer):
    value = serializers.IntegerField(help_text="The LLM judge's verdict: 1 correct, 0 neutral, -1 incorrect.")
    reason = serializers.CharField(allow_blank=True, help_text="The judge's one-sentence reason.")
    source = serializers.CharField(help_text="The judge model.")


class StepHintsSerializer(serializers.Serializer):
    mc = McHintSerializer(required=False)
    prm = PrmHintSerializer(required=False)
    judge = JudgeHintSerializer(required=False)


class StepSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    index = serializers.IntegerField(help_text="0-based position in the solution.")
    text = serializers.CharField()
    hints = StepHintsSerializer(allow_null=True, help_text="Machine hints; null where I may not see them.")
    value = serializers.ChoiceField(
        choices=LABEL_VALUES, allow_null=True, help_text=f"My label of the step ({LABEL_HELP}); null if none yet."
    )
    error_category = serializers.CharField(allow_blank=True, help_text="My error category of the step; empty: none.")
    error_note = serializers.CharField(allow_blank=True, help_text='My note of an "other" error category.')


class SolutionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    policy_model = serializers.CharField()
    item = ItemSerializer()
    steps = StepSerializer(many=True)


# --- assignments and my labels --------------------------------------------------------------


class AssignmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Assignment.Status.choices)
    seconds_spent = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


MISSING_HELP = (
    "Ids of the steps I must still label before submitting, in order: all steps, or in first-error projects "
    "those up to the first incorrect one. Empty: submit may go ahead."
)


def _missing_step_ids():
    return serializers.ListField(child=serializers.IntegerField(), help_text=MISSING_HELP)


class AssignmentWithSolutionSerializer(serializers.Serializer):
    # Nested rather than inherited: one component owns the status enum, so its schema name is stable.
    assignment = AssignmentSerializer()
    solution = SolutionSerializer()
    missing_step_ids = _missing_step_ids()


class MyLabelSerializer(serializers.Serializer):
    step_id = serializers.IntegerField()
    index = serializers.IntegerField()
    value = serializers.IntegerField(allow_null=True, help_text=LABEL_HELP + " Null: not labelled yet.")
    error_category = serializers.CharField(allow_blank=True, help_text="Why the step is incorrect; empty: not said.")
    error_note = serializers.CharField(allow_blank=True, help_text='The note of an "other" error category.')


class LabelSavedSerializer(MyLabelSerializer):
    missing_step_ids = _missing_step_ids()


class MyLabelsSerializer(serializers.Serializer):
    assignment = AssignmentSerializer()
    labelled = serializers.IntegerField()
    labels = MyLabelSerializer(many=True)
    missing_step_ids = _missing_step_ids()


# One enum for the label value a request sends (gold and label saves); named in SPECTACULAR_SETTINGS.
LABEL_VALUE_CHOICES = [(v, str(v)) for v in LABEL_VALUES]


class LabelValueSerializer(serializers.Serializer):
    value = serializers.ChoiceField(choices=LABEL_VALUE_CHOICES, help_text=LABEL_HELP)


class LabelSetSerializer(LabelValueSerializer):
    error_category = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text=(
            "Only with value -1, in projects that enable error categories: one of the project's categories "
            "(default: visual perception, reasoning, knowledge, calculation, misunderstood question, other). "
            "Left out or empty: none. Each save sets it anew."
        ),
    )
    error_note = serializers.CharField(
        required=False, allow_blank=True, help_text='Free text, only with the category "other".'
    )


class SubmitRequestSerializer(serializers.Serializer):
    seconds = serializers.IntegerField(
        min_value=0, max_value=SIX_HOURS, default=0, help_text="Time spent on this item, added to the total."
    )
    cannot_judge_reason = serializers.CharField(
        allow_blank=True, default="", help_text="Non-empty: finish as cannot-judge instead of requiring labels."
    )


class SkipRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(allow_blank=True, default="")
    flag = serializers.BooleanField(default=False, help_text="Flag the problem itself as broken.")


# --- review --------------------------------------------------------------------------------


class ReviewCandidateSerializer(serializers.Serializer):
    solution_id = serializers.IntegerField()
    item_external_id = serializers.CharField()
    policy_model = serializers.CharField()
    annotators = serializers.IntegerField()
    reasons = serializers.ListField(child=serializers.CharField())
    adjudicated = serializers.BooleanField()


class ReviewQuerySerializer(serializers.Serializer):
    include_adjudicated = serializers.BooleanField(
        default=False, help_text="Also list disputed solutions a reviewer has already adjudicated."
    )


class MachineScoreSerializer(serializers.Serializer):
    score = serializers.FloatField(allow_null=True)
    right = serializers.IntegerField(allow_null=True)
    total = serializers.IntegerField(allow_null=True)


class GoldSerializer(serializers.Serializer):
    value = serializers.IntegerField(help_text=LABEL_HELP)
    source = serializers.ChoiceField(choices=GoldLabel.Source.choices)
    origin = serializers.CharField()
    decided_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField()


class LabelChangeSerializer(serializers.Serializer):
    changed_by = serializers.CharField(allow_null=True)
    annotator = serializers.CharField(allow_null=True, help_text="Whose label changed; null for the gold label.")
    is_gold = serializers.BooleanField()
    old_value = serializers.IntegerField(allow_null=True)
    new_value = serializers.IntegerField(allow_null=True)
    changed_at = serializers.DateTimeField()


class ReviewStepSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    index = serializers.IntegerField()
    text = serializers.CharField()
    labels = serializers.DictField(
        child=serializers.IntegerField(allow_null=True), help_text="Each annotator's label by username (null: none)."
    )
    mc = MachineScoreSerializer(allow_null=True)
    prm = MachineScoreSerializer(allow_null=True)
    gold = GoldSerializer(allow_null=True)
    history = LabelChangeSerializer(many=True, help_text="Every change of this step's labels, newest first.")


class ReviewSolutionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    policy_model = serializers.CharField()
    final_answer = serializers.CharField()
    is_correct = serializers.BooleanField(allow_null=True)
    item = ItemSerializer()
    annotators = serializers.ListField(child=serializers.CharField())
    steps = ReviewStepSerializer(many=True)
