"""Request and response shapes of the import and export endpoints."""

from __future__ import annotations

from rest_framework import serializers

from annotation.formats.step_labels import DEFAULT_NEUTRAL, NEUTRAL_CHOICES
from annotation.models import ImportRecord
from annotation.selectors import LABEL_SOURCES, ExportFilters
from annotation.services.dataset_import import IMPORT_FORMATS


class ImportRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=sorted(IMPORT_FORMATS))
    file = serializers.FileField(
        help_text="The dataset file (jsonl, json, parquet); for folder formats (mathv) a zip of the folder."
    )
    images = serializers.FileField(required=False, help_text="A zip of the images the records name.")
    options = serializers.JSONField(
        required=False, binary=True, help_text='Format options as a JSON object, e.g. {"max_steps": 12}.'
    )

    def validate_options(self, value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise serializers.ValidationError("options must be a JSON object")
        return value


class ImportResultSerializer(serializers.Serializer):
    import_id = serializers.IntegerField()
    items_created = serializers.IntegerField()
    items_existing = serializers.IntegerField()
    solutions_created = serializers.IntegerField()
    solutions_existing = serializers.IntegerField()
    steps_created = serializers.IntegerField()
    gold_labels_created = serializers.IntegerField()
    auto_labels_created = serializers.IntegerField()
    images_created = serializers.IntegerField()


class ImportErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    file = serializers.CharField(allow_blank=True)
    line = serializers.IntegerField(allow_null=True)
    field = serializers.CharField(allow_null=True)


class ImportRecordSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ImportRecord
        fields = ["id", "format", "source_name", "status", "created_by", "counts", "error", "started_at", "finished_at"]
        read_only_fields = fields


class ExportQuerySerializer(serializers.Serializer):
    label_source = serializers.ChoiceField(choices=LABEL_SOURCES, default="merged")
    only_adjudicated = serializers.BooleanField(default=False)
    only_agreed = serializers.BooleanField(default=False)
    complete_only = serializers.BooleanField(default=False)
    since = serializers.DateTimeField(required=False, help_text="Solutions created at or after (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Solutions created before (ISO 8601).")
    images = serializers.BooleanField(
        default=False, help_text="Download a zip holding the data file and images.zip."
    )
    neutral = serializers.ChoiceField(
        choices=NEUTRAL_CHOICES, default=DEFAULT_NEUTRAL,
        help_text="visualprm400k, trl-stepwise: neutral steps become positive or negative labels, or skip "
        "(the row ends before the first neutral step).",
    )
    file_format = serializers.ChoiceField(
        choices=("jsonl", "parquet"), required=False, help_text="trl-stepwise: the file kind (default parquet)."
    )
    # The merge policy of label_source=merged (prm.core.merge): the labels a PRM trains on.
    mc_label = serializers.ChoiceField(choices=["value", "advantage"], default="value")
    mc_threshold = serializers.FloatField(default=0.0, help_text="Value label: + when mc > this.")
    advantage_tolerance = serializers.FloatField(default=0.0, min_value=0.0)
    consensus_filter = serializers.BooleanField(default=False)

    def filters(self) -> ExportFilters:
        data = self.validated_data
        return ExportFilters(
            label_source=data["label_source"],
            only_adjudicated=data["only_adjudicated"],
            only_agreed=data["only_agreed"],
            complete_only=data["complete_only"],
            since=data.get("since"),
            until=data.get("until"),
            mc_label=data["mc_label"],
            mc_threshold=data["mc_threshold"],
            advantage_tolerance=data["advantage_tolerance"],
            consensus_filter=data["consensus_filter"],
        )
