"""Starting export jobs: a project's dataset written to a file by a worker, offered for download.

Every filter and format option of `manage.py export_dataset` can be given; they are checked here,
before the job starts, so a bad combination is refused with the reason next to the form.
"""

from __future__ import annotations

from datetime import datetime

from annotation.formats.step_labels import neutral_option
from annotation.models import Project
from annotation.selectors import LABEL_SOURCES, ExportFilters
from annotation.services.dataset_export import EXPORT_FORMATS, ExportRefused, export_file_format, file_formats
from workers.models import Job
from workers.services import job_create

# The merged labels' judge settings are flags too: use_judge (the judge after MC), mc_judge_consensus.
EXPORT_FLAGS = ("only_adjudicated", "only_agreed", "complete_only", "use_judge", "mc_judge_consensus")


def export_job_start(
    *,
    project: Project,
    format_name: str,
    label_source: str = "merged",
    flags: set[str] | frozenset = frozenset(),
    filters: dict | None = None,
    neutral: str | None = None,
    file_format: str | None = None,
    images_zip: bool = False,
    user=None,
) -> Job:
    """Queue an export of `project`; ValueError names an unknown format, label source, flag or option.

    `filters` holds any further ExportFilters field (since, until, mc_label, mc_threshold,
    advantage_tolerance, consensus_filter, ...); `neutral` and `file_format` are the format's options
    (as the command's --neutral and --file-format); `images_zip` writes the records' images beside
    the file (as --images-zip).
    """
    if format_name not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format_name!r}; choose one of {', '.join(sorted(EXPORT_FORMATS))}")
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {label_source!r}; choose one of {', '.join(LABEL_SOURCES)}")
    unknown = sorted(set(flags) - set(EXPORT_FLAGS))
    if unknown:
        raise ValueError(f"unknown export options {unknown}; known: {', '.join(EXPORT_FLAGS)}")
    chosen = {"label_source": label_source, **{flag: True for flag in sorted(flags)}, **(filters or {})}
    ExportFilters(**chosen)  # a bad policy setting fails here, with MergePolicy's message
    options: dict = {}
    if neutral:
        options["neutral"] = neutral_option({"neutral": neutral})
    kinds = file_formats(format_name)
    if file_format:
        try:
            export_file_format(format_name=format_name, file_name="export", file_format=file_format)
        except ExportRefused as exc:
            raise ValueError(str(exc)) from None
    chosen_kind = file_format or next(iter(kinds))
    if images_zip and chosen_kind != "jsonl":
        raise ValueError(
            f"{format_name} as {chosen_kind} carries its images inside the file; an images zip goes beside JSON lines only"
        )
    stored = {key: value.isoformat() if isinstance(value, datetime) else value for key, value in chosen.items()}
    params = {"format": format_name, "filters": stored, "options": options, "file_format": chosen_kind,
              "images_zip": bool(images_zip)}
    return job_create(kind=Job.Kind.EXPORT, project=project, params=params, user=user)
