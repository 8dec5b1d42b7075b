"""AutoLabel.estimate: how a Monte Carlo label was obtained; adaptive and first-error labels lose
their score (a stopping rule's right/total is no estimate of mc_i) and keep their value label."""

from django.db import migrations, models
from django.db.models import Q

STRATEGY_ESTIMATE = {"exhaustive": "exhaustive", "adaptive": "adaptive", "binary_search": "first_error"}


def classify_existing(apps, schema_editor):
    AutoLabel = apps.get_model("annotation", "AutoLabel")
    Job = apps.get_model("workers", "Job")
    mc_labels = AutoLabel.objects.filter(kind="mc")
    # Labels an MC job wrote carry its strategy; the rest came with a dataset's counts.
    for project_id, params in Job.objects.filter(kind="mc_label").values_list("project_id", "params"):
        estimate = STRATEGY_ESTIMATE.get((params or {}).get("strategy"))
        source = (params or {}).get("source")
        if estimate and source:
            mc_labels.filter(source=source, step__solution__item__project_id=project_id, estimate="").update(
                estimate=estimate
            )
    mc_labels.filter(estimate="").update(estimate="imported_counts")
    stopped = mc_labels.filter(estimate__in=["adaptive", "first_error"], score__isnull=False)
    stopped.filter(num_correct__gt=0).update(value=1, score=None)
    stopped.update(value=-1, score=None)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0008_assignment_label_version"),
        ("workers", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="autolabel",
            name="estimate",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "not a Monte Carlo label"),
                    ("exhaustive", "exhaustive (k completions per step)"),
                    ("adaptive", "adaptive (stops at the first right completion)"),
                    ("first_error", "first-error search (binary search, inferred steps)"),
                    ("imported_counts", "counts imported from a dataset"),
                ],
                default="",
                db_default="",
                max_length=20,
            ),
        ),
        migrations.RunPython(classify_existing, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="autolabel",
            constraint=models.CheckConstraint(
                condition=~Q(estimate__in=["adaptive", "first_error"]) | Q(score__isnull=True),
                name="autolabel_stopped_estimates_have_no_score",
            ),
        ),
    ]
