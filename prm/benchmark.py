"""A PRM scored on a whole imported benchmark project (VisualProcessBench, ProcessBench), comparable with the paper.

Unlike the held-out evaluation (prm.evaluation), nothing is merged into chunks: every original step
is scored, and every step with gold +1 or -1 counts (neutral and unjudged steps are left out).
Solutions whose conversation is longer than the model's context are listed in the report's
`too_long` block and not scored, never cut. The report (a JSON object):

- `overall` and `per_source`: macro F1, F1 of each class and the number of steps at 0.5, the same at
  the best pooled threshold (`best`), AUROC, a bootstrap 95% interval of macro F1 (prm.core.metrics);
- `first_error`: ProcessBench's first-error F1 per subset (data source) and their average;
- `reference`: the paper's VisualProcessBench macro F1 figures, to read beside.

An LLM judge's stored labels get the same report (`judge_benchmark_evaluate`), so a team compares
its judge and its PRM on equal terms.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db.models import Count

from annotation.models import AutoLabel, GoldLabel, Item, ItemImage, Project, Solution, Step
from annotation.selectors import judge_values
from prm.core.metrics import ScoredSolution, processbench_f1, step_benchmark_report
from prm.evaluation import first_error_summary, gold_values, item_images
from prm.models import Evaluation, PRMVersion

if TYPE_CHECKING:
    from prm.core.scoring import PRMScorer

# VisualPRM paper (arXiv 2503.10291), VisualProcessBench macro F1 (percent).
PAPER_MACRO_F1 = {"Random guessing": 50.0, "GPT-4o": 60.3, "Gemini-2.0-Flash": 62.3, "VisualPRM-8B": 62.0}
TOO_LONG_LISTED = 100  # solutions named in the report; the count is always complete


def benchmark_split(project: Project) -> str:
    """Evaluation.split of a version's report on `project` (by id: a project may be renamed)."""
    return f"benchmark:{project.pk}"


@dataclass
class BenchmarkSolution:
    solution_id: int
    key: str
    steps: list[str]
    gold: list[int | None]


@dataclass
class BenchmarkItem:
    external_id: str
    question: str
    data_source: str
    image_files: list[str]
    solutions: list[BenchmarkSolution] = field(default_factory=list)


def benchmark_items(*, project: Project) -> list[BenchmarkItem]:
    """Every item of `project` with its solutions that carry at least one gold label, steps as imported."""
    gold = dict(GoldLabel.objects.filter(step__solution__item__project=project).values_list("step_id", "value"))
    steps: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for step_id, solution_id, text in (
        Step.objects.filter(solution__item__project=project).order_by("solution_id", "index")
        .values_list("id", "solution_id", "text")
    ):
        steps[solution_id].append((step_id, text))
    images: dict[int, list[str]] = defaultdict(list)
    for item_id, name in (
        ItemImage.objects.filter(item__project=project).order_by("item_id", "position").values_list("item_id", "image__file")
    ):
        images[item_id].append(name)
    items = {
        item_id: BenchmarkItem(external_id=external_id, question=question, data_source=data_source,
                               image_files=images.get(item_id, []))
        for item_id, external_id, question, data_source in Item.objects.filter(project=project).order_by("id")
        .values_list("id", "external_id", "question", "data_source")
    }
    for solution_id, item_id, key in (
        Solution.objects.filter(item__project=project).order_by("item_id", "id").values_list("id", "item_id", "key")
    ):
        rows = steps.get(solution_id, [])
        step_gold = gold_values([gold.get(step_id) for step_id, _ in rows])
        if any(value is not None for value in step_gold):
            items[item_id].solutions.append(
                BenchmarkSolution(solution_id=solution_id, key=key, steps=[t for _, t in rows], gold=step_gold)
            )
    return [item for item in items.values() if item.solutions]


def benchmark_solution_count(*, project: Project) -> int:
    """How many solutions benchmark_items would score (those with a gold label), in one query."""
    return Solution.objects.filter(item__project=project, steps__gold_label__isnull=False).distinct().count()


def context_length(scorer: PRMScorer) -> int | None:
    """The most tokens the scorer's model takes (its text model's max_position_embeddings), if it says."""
    config = scorer.model.config
    text_config = getattr(config, "text_config", None) or config
    return getattr(text_config, "max_position_embeddings", None)


def benchmark_evaluate(
    *, project: Project, scorer: PRMScorer, max_tokens: int | None = None, resamples: int = 1000, seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Score every gold-labelled solution of `project` with `scorer` (each item's solutions as one
    batch) and build the report. `max_tokens`: the context limit (default: the model's)."""
    from prm.core.conversation import encode_conversation

    limit = max_tokens if max_tokens is not None else context_length(scorer)
    items = benchmark_items(project=project)
    scored: list[ScoredSolution] = []
    too_long: list[dict[str, Any]] = []
    too_long_count = 0
    for item in items:
        images = item_images(item.image_files)
        fitting = []
        for solution in item.solutions:
            tokens = len(encode_conversation(
                scorer.processor, question=item.question, steps=solution.steps, images=images,
                label_ids=scorer.label_ids,
            ).input_ids)
            if limit is not None and tokens > limit:
                too_long_count += 1
                if len(too_long) < TOO_LONG_LISTED:
                    too_long.append({"item": item.external_id, "solution": solution.key, "data_source": item.data_source,
                                     "steps": len(solution.steps), "tokens": tokens})
            else:
                fitting.append(solution)
        if fitting:
            batch = scorer.score_solutions(question=item.question, solutions=[s.steps for s in fitting], images=images)
            scored.extend(
                ScoredSolution(gold=s.gold, scores=step_scores, data_source=item.data_source)
                for s, step_scores in zip(fitting, batch, strict=True)
            )
        if progress is not None:
            progress(len(item.solutions))
    report: dict[str, Any] = {
        "project": project.name,
        "num_items": len(items),
        "num_solutions": sum(len(item.solutions) for item in items),
        "num_scored_solutions": len(scored),
        "too_long": {"count": too_long_count, "context_length": limit, "solutions": too_long},
        "reference_macro_f1_percent": PAPER_MACRO_F1,
    }
    if any(g in (1, -1) for s in scored for g in s.gold):
        report.update(step_benchmark_report(scored, resamples=resamples, seed=seed))
    else:
        report.update({"overall": None, "per_source": {}})
    report["first_error"] = first_error_summary(processbench_f1(scored))
    return report


# A judge's verdict read as a score, so the PRM's metrics apply unchanged (a step is predicted
# correct when its score > 0.5). Neutral counts as correct: it names no error, as the PRM's "+".
JUDGE_SCORES = {1: 1.0, 0: 0.75, -1: 0.0}


def judge_sources(*, project: Project) -> list[tuple[str, int]]:
    """(judge model, steps it labelled) of `project`, most steps first."""
    return [
        (row["source"], row["steps"])
        for row in AutoLabel.objects.filter(step__solution__item__project=project, kind=AutoLabel.Kind.JUDGE)
        .values("source").annotate(steps=Count("id")).order_by("-steps", "source")
    ]


def judge_benchmark_evaluate(
    *, project: Project, source: str = "", resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The benchmark report of an LLM judge's stored labels on `project`, in the PRM report's shape.

    `source`: the judge model (default: the one that labelled most steps). A solution the judge did
    not label in full (its reply was skipped) is counted in `unjudged` and not scored, as a PRM's
    too-long solution is; neutral verdicts count as "correct" (JUDGE_SCORES).
    """
    if not source:
        sources = judge_sources(project=project)
        if not sources:
            raise ValueError(f"project {project.name!r} has no judge labels: run a judge job first")
        source = sources[0][0]
    verdicts = judge_values(source=source, step__solution__item__project=project)
    if not verdicts:
        raise ValueError(f"project {project.name!r} has no labels of judge {source!r}")
    steps: dict[int, list[int]] = defaultdict(list)
    for step_id, solution_id in (
        Step.objects.filter(solution__item__project=project).order_by("solution_id", "index").values_list("id", "solution_id")
    ):
        steps[solution_id].append(step_id)
    items = benchmark_items(project=project)
    scored: list[ScoredSolution] = []
    unjudged: list[dict[str, Any]] = []
    unjudged_count = 0
    for item in items:
        for solution in item.solutions:
            values = [verdicts.get(step_id) for step_id in steps[solution.solution_id]]
            if any(value is None for value in values):
                unjudged_count += 1
                if len(unjudged) < TOO_LONG_LISTED:
                    unjudged.append({"item": item.external_id, "solution": solution.key, "data_source": item.data_source,
                                     "steps": len(values)})
                continue
            scored.append(ScoredSolution(
                gold=solution.gold, scores=[JUDGE_SCORES[v] for v in values], data_source=item.data_source
            ))
    versions = sorted(set(
        AutoLabel.objects.filter(step__solution__item__project=project, kind=AutoLabel.Kind.JUDGE, source=source)
        .values_list("prompt_version", flat=True)
    ))
    report: dict[str, Any] = {
        "project": project.name,
        "judge": {"source": source, "prompt_versions": versions},
        "num_items": len(items),
        "num_solutions": sum(len(item.solutions) for item in items),
        "num_scored_solutions": len(scored),
        "unjudged": {"count": unjudged_count, "solutions": unjudged},
        "too_long": {"count": 0, "context_length": None, "solutions": []},
        "reference_macro_f1_percent": PAPER_MACRO_F1,
    }
    if any(g in (1, -1) for s in scored for g in s.gold):
        report.update(step_benchmark_report(scored, resamples=resamples, seed=seed))
    else:
        report.update({"overall": None, "per_source": {}})
    report["first_error"] = first_error_summary(processbench_f1(scored))
    return report


def benchmark_record(*, version: PRMVersion, project: Project, report: dict[str, Any]) -> Evaluation:
    """Keep `version`'s report on the benchmark `project` (the page lists these)."""
    return Evaluation.objects.create(version=version, split=benchmark_split(project), metrics=report)


def benchmark_reports(*, project: Project) -> list[Evaluation]:
    """The stored reports on `project`, newest first, with their versions."""
    return list(Evaluation.objects.filter(split=benchmark_split(project)).select_related("version")[:50])


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def report_rows(report: dict[str, Any]) -> dict[str, Any]:
    """A stored report as the page shows it: percentages, the pooled row first, then each source."""
    rows = []
    blocks = [("All sources", report.get("overall"))] + list((report.get("per_source") or {}).items())
    for name, block in blocks:
        if not block:
            continue
        interval = block.get("macro_f1_ci95") or (None, None)
        rows.append({
            "name": name or "(no source)", "macro_f1": _percent(block["macro_f1"]),
            "f1_correct": _percent(block["f1_correct"]), "f1_incorrect": _percent(block["f1_incorrect"]),
            "num_steps": block["num_steps"], "auroc": None if block.get("auroc") is None else round(block["auroc"], 3),
            "low": _percent(interval[0]), "high": _percent(interval[1]),
            "best_macro_f1": _percent(block["best"]["macro_f1"]),
        })
    overall = report.get("overall")
    ours = _percent(overall["macro_f1"]) if overall else None
    comparison = [{"name": name, "macro_f1": value, "ours": False} for name, value in PAPER_MACRO_F1.items()]
    if ours is not None:
        judge = report.get("judge")
        name = (f"Judge {judge['source']}" if judge
                else f"This PRM ({(report.get('model') or {}).get('version') or 'model'})")
        comparison.append({"name": name, "macro_f1": ours, "ours": True})
    comparison.sort(key=lambda row: row["macro_f1"], reverse=True)
    first_error = report.get("first_error") or {}
    return {
        "rows": rows, "comparison": comparison, "best_threshold": report.get("best_threshold"),
        "first_error_f1": _percent(first_error.get("f1")),
        "first_error_subsets": [
            {"name": name or "(no source)", "f1": _percent(r["f1"]), "error_accuracy": _percent(r["error_accuracy"]),
             "correct_accuracy": _percent(r["correct_accuracy"]), "num_erroneous": r["num_erroneous"],
             "num_correct": r["num_correct"]}
            for name, r in (first_error.get("per_subset") or {}).items()
        ],
        "too_long": report.get("too_long") or {"count": 0, "solutions": []},
        "unjudged": report.get("unjudged") or {"count": 0, "solutions": []},
        "judge": report.get("judge"),
    }
