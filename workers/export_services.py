"""Starting export jobs: a project's dataset written to a file by workers, offered for download.

Every filter and format option of `manage.py export_dataset` can be given; they are checked here,
before the job starts, so a bad combination is refused with the reason next to the form.

The job is two stages. First, parts: each writes the export of one range of solution ids, and any
number of workers write them at once. Then one chunk joins the parts, in order, into the file a
single pass would have written (workers.export_runner).
"""

from __future__ import annotations

from datetime import datetime

from annotation.formats.step_labels import neutral_option
from annotation.models import Project
from annotation.selectors import LABEL_SOURCES, ExportFilters, export_solution_ids
from annotation.services.dataset_export import EXPORT_FORMATS, ExportRefused, export_file_format, file_formats
from workers.models import Job
from workers.services import job_create

# The merged labels' judge settings are flags too: use_judge (the judge after MC), mc_judge_consensus.
EXPORT_FLAGS = ("only_adjudicated", "only_agreed", "complete_only", "use_judge", "mc_judge_consensus")
# A part of about a second's work at the measured export rate (benchmarks/import_export.py), so parts
# spread over the workers there are while the join's copying stays small next to them.
EXPORT_SOLUTIONS_PER_PART = 5000


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
    solutions_per_part: int = EXPORT_SOLUTIONS_PER_PART,
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
    export_filters = ExportFilters(**chosen)  # a bad policy setting fails here, with MergePolicy's message
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
    ids = list(export_solution_ids(project=project, filters=export_filters))
    return job_create(kind=Job.Kind.EXPORT, project=project, params=params, user=user,
                      chunks=export_chunks(ids, per_part=solutions_per_part))


def export_chunks(ids: list[int], *, per_part: int) -> list[dict]:
    """Parts (stage 0) over ranges of solution ids that meet end to end, about `per_part` selected
    solutions each, then the join (stage 1). Ranges rather than lists keep a part's params small at any
    size, and meeting end to end they miss nothing the filters select by the time a part runs (an
    adjudication in between) up to the last id selected now. At least one part: an empty export still
    writes its (empty) file."""
    size = max(1, per_part)
    parts, first = [], 1
    for i in range(0, len(ids), size):
        last = ids[min(i + size, len(ids)) - 1]
        parts.append({"params": {"first_id": first, "last_id": last}, "size": len(ids[i : i + size])})
        first = last + 1
    parts = parts or [{"params": {"first_id": 1, "last_id": 0}, "size": 0}]
    return [*parts, {"params": {"join": True}, "size": 0, "stage": 1}]
