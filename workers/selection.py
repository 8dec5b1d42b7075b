"""Which solutions (or items) of a project a job works on: all, the unlabelled, a data source, or named items."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Exists, OuterRef, QuerySet

from annotation.models import GoldLabel, HumanLabel, Item, Project, Solution

SELECTION_KINDS = {
    "all": "all solutions",
    "unlabelled": "only unlabelled (no human or gold label yet)",
    "data_source": "one data source",
    "external_ids": "items by external id",
}


class SelectionError(ValueError):
    pass


@dataclass(frozen=True)
class Selection:
    kind: str = "all"
    data_source: str = ""
    external_ids: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        if self.kind == "data_source":
            return f"data source {self.data_source}"
        if self.kind == "external_ids":
            return f"{len(self.external_ids)} named items"
        return SELECTION_KINDS.get(self.kind, self.kind)


def parse_external_ids(text: str) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c'), keeping the first of repeated ids."""
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def _has_human_or_gold_label(solution_ref: str):
    """An Exists over the steps of the solution whose id is `solution_ref` in the outer query."""
    return Exists(HumanLabel.objects.filter(step__solution=OuterRef(solution_ref))) | Exists(
        GoldLabel.objects.filter(step__solution=OuterRef(solution_ref))
    )


def selected_items(*, project: Project, selection: Selection) -> QuerySet[Item]:
    """Items of the selection; an unlabelled item has no solution with a human or gold label."""
    items = Item.objects.filter(project=project)
    if selection.kind == "all":
        return items
    if selection.kind == "unlabelled":
        labelled = Solution.objects.filter(_has_human_or_gold_label("pk"), item=OuterRef("pk"))
        return items.exclude(Exists(labelled))
    if selection.kind == "data_source":
        if not selection.data_source:
            raise SelectionError("name the data source to select")
        return items.filter(data_source=selection.data_source)
    if selection.kind == "external_ids":
        if not selection.external_ids:
            raise SelectionError("list at least one item external id")
        found = set(items.filter(external_id__in=selection.external_ids).values_list("external_id", flat=True))
        missing = [external_id for external_id in selection.external_ids if external_id not in found]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise SelectionError(f"no item with external id {shown} in project {project.name!r}")
        return items.filter(external_id__in=selection.external_ids)
    raise SelectionError(f"unknown selection {selection.kind!r}; choose from {', '.join(SELECTION_KINDS)}")


def selected_solutions(*, project: Project, selection: Selection) -> QuerySet[Solution]:
    """Solutions of the selection; an unlabelled one has no step with a human or gold label."""
    solutions = Solution.objects.filter(item__project=project)
    if selection.kind == "unlabelled":
        return solutions.exclude(_has_human_or_gold_label("pk"))
    if selection.kind == "all":
        return solutions
    return solutions.filter(item__in=selected_items(project=project, selection=selection))


def project_solution_ids(*, project: Project, solution_ids=None, with_steps: bool = False) -> list[int]:
    """The ids of `solution_ids` (all of the project's when None), in order; ValueError names any
    that are not in `project`. `with_steps`: only solutions that have steps."""
    solutions = Solution.objects.filter(item__project=project)
    if solution_ids is not None:
        solutions = solutions.filter(pk__in=solution_ids)
        missing = sorted(set(solution_ids) - set(solutions.values_list("pk", flat=True)))
        if missing:
            raise ValueError(f"solutions {missing} are not in project {project.name!r}")
    if with_steps:
        solutions = solutions.filter(steps__isnull=False).distinct()
    return list(solutions.order_by("pk").values_list("pk", flat=True))


def id_chunks(ids: list[int], *, per_chunk: int, key: str = "solution_ids") -> list[dict]:
    """Job chunks of at most `per_chunk` ids each, under `key` in each chunk's params."""
    size = max(1, per_chunk)
    return [{"params": {key: ids[i : i + size]}, "size": len(ids[i : i + size])} for i in range(0, len(ids), size)]


def solution_chunks(ids: list[int], *, per_chunk: int) -> list[dict]:
    """As id_chunks, with one empty chunk when there are no solutions (the job still runs and ends)."""
    return id_chunks(ids, per_chunk=per_chunk) or [{"params": {"solution_ids": []}, "size": 0}]
