"""Starting export jobs: a project's dataset written to a file by a worker, offered for download."""

from __future__ import annotations

from annotation.models import Project
from annotation.selectors import LABEL_SOURCES
from annotation.services.dataset_export import EXPORT_FORMATS
from workers.models import Job
from workers.services import job_create

# The merged labels' judge settings are flags too: use_judge (the judge after MC), mc_judge_consensus.
EXPORT_FLAGS = ("only_adjudicated", "only_agreed", "complete_only", "use_judge", "mc_judge_consensus")


def export_job_start(
    *, project: Project, format_name: str, label_source: str = "merged", flags: set[str] | frozenset = frozenset(), user=None
) -> Job:
    """Queue an export of `project`; ValueError names an unknown format, label source or flag."""
    if format_name not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format_name!r}; choose one of {', '.join(sorted(EXPORT_FORMATS))}")
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {label_source!r}; choose one of {', '.join(LABEL_SOURCES)}")
    unknown = sorted(set(flags) - set(EXPORT_FLAGS))
    if unknown:
        raise ValueError(f"unknown export options {unknown}; known: {', '.join(EXPORT_FLAGS)}")
    filters = {"label_source": label_source, **{flag: True for flag in sorted(flags)}}
    return job_create(kind=Job.Kind.EXPORT, project=project, params={"format": format_name, "filters": filters}, user=user)
