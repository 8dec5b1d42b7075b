"""Which steps a binary step-label export writes, and as what: one rule for VisualPRM400K and TRL.

Both formats hold a solution, or a prefix of it, with one binary label per step ("+"/"-",
True/False); neither can say "no label" or "neutral". So:

- a solution with every step labelled is written whole (VisualProcessBench judges later steps on
  their own, so they are worth keeping after an error);
- a solution labelled up to its first error (ProcessBench, the released pipeline's early stop,
  MC rollouts stopped at the first zero) is written up to and including the wrong step, as TRL's
  own PRM800K example does; the unlabelled rest is dropped;
- anything else with an unlabelled step is not written;
- neutral (0) steps follow the `neutral` option: "positive", "negative", or "skip", which ends
  the row just before the first neutral step (a shorter prefix is still correctly labelled,
  whereas dropping a step from the middle would change what later steps were judged against).
"""

from __future__ import annotations

from collections.abc import Sequence

from annotation.formats.records import ExportStep

NEUTRAL_CHOICES = ("positive", "negative", "skip")
DEFAULT_NEUTRAL = "positive"


def neutral_option(options: dict) -> str:
    """The `neutral` export option, checked; ValueError names the choices."""
    value = str(options.get("neutral") or DEFAULT_NEUTRAL).strip().lower()
    if value not in NEUTRAL_CHOICES:
        raise ValueError(f"option neutral must be one of {', '.join(NEUTRAL_CHOICES)}, not {value!r}")
    return value


def binary_labels(steps: Sequence[ExportStep], *, neutral: str) -> list[bool] | None:
    """True/False for the first len(result) steps of the solution, or None when nothing is written."""
    labels = [step.label for step in steps]
    if None in labels:
        try:
            first_error = labels.index(-1)
        except ValueError:
            return None
        if None in labels[: first_error + 1]:
            return None
        labels = labels[: first_error + 1]
    if neutral == "skip" and 0 in labels:
        labels = labels[: labels.index(0)]
    if not labels:
        return None
    neutral_value = neutral == "positive"
    return [neutral_value if label == 0 else label > 0 for label in labels]
