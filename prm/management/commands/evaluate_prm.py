"""manage.py evaluate_prm --project NAME (--model DIR | --version ID | --judge-labels [JUDGE]) --out report.json"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import Project
from prm.benchmark import (
    benchmark_evaluate,
    benchmark_record,
    benchmark_solution_count,
    judge_benchmark_evaluate,
)
from prm.models import PRMVersion


class Command(BaseCommand):
    help = (
        "Score a PRM on a whole imported benchmark project (VisualProcessBench, ProcessBench): every original "
        "step, macro F1 per data source and pooled, at 0.5 and the best threshold, AUROC, a bootstrap interval, "
        "first-error F1; the report JSON goes to --out."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # `--version ID` names a PRM version here, in place of Django's own --version (its release).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="The benchmark project's name.")
        model = parser.add_mutually_exclusive_group(required=True)
        model.add_argument("--model", type=Path, help="A PRM model folder.")
        model.add_argument("--version", type=int, help="A PRM version id (its report is also kept for the page).")
        model.add_argument(
            "--judge-labels", nargs="?", const="", metavar="JUDGE",
            help="Score the stored LLM judge labels instead of a PRM (the judge model; default: the one with most labels).",
        )
        parser.add_argument("--out", required=True, type=Path, help="Report JSON file to write.")
        parser.add_argument("--max-tokens", type=int, help="Context limit (default: the model's); longer solutions are reported, not scored.")
        parser.add_argument("--resamples", type=int, default=1000, help="Bootstrap resamples for the 95%% interval.")
        parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda.")

    def handle(self, *args, project: str, model: Path | None, version: int | None, out: Path, **options):
        target = Project.objects.filter(name=project).first()
        if target is None:
            raise CommandError(f"no project named {project!r}")
        if options["judge_labels"] is not None:
            if options["resamples"] < 1:
                raise CommandError("--resamples must be at least 1")
            try:
                report = judge_benchmark_evaluate(
                    project=target, source=options["judge_labels"], resamples=options["resamples"]
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            out.write_text(json.dumps(report, indent=2))
            self.stdout.write(f"judge {report['judge']['source']}: {report['num_scored_solutions']} solutions scored, "
                              f"{report['unjudged']['count']} not labelled in full")
            self.stdout.write(_summary(report))
            self.stdout.write(f"Wrote {out}")
            return
        prm_version = None
        if version is not None:
            prm_version = PRMVersion.objects.filter(pk=version).first()
            if prm_version is None:
                raise CommandError(f"no PRM version with id {version}")
            model = Path(prm_version.directory)
        if not model.is_dir():
            raise CommandError(f"model folder {model} does not exist")
        if options["resamples"] < 1:
            raise CommandError("--resamples must be at least 1")
        total = benchmark_solution_count(project=target)
        if not total:
            raise CommandError(f"project {project!r} has no solution with a gold step label to evaluate on")
        from prm.core.scoring import PRMScorer  # torch loads only here

        scorer = PRMScorer(model, device=options["device"])
        with tqdm(total=total, desc="score", unit=" solutions", file=self.stderr._out, disable=None) as bar:
            report = benchmark_evaluate(
                project=target, scorer=scorer, max_tokens=options["max_tokens"], resamples=options["resamples"],
                progress=bar.update,
            )
        report["model"] = {"directory": str(model), "version": prm_version.name if prm_version else None}
        out.write_text(json.dumps(report, indent=2))
        if prm_version is not None:
            benchmark_record(version=prm_version, project=target, report=report)
        self.stdout.write(_summary(report))
        self.stdout.write(f"Wrote {out}")


def _summary(report: dict) -> str:
    lines = []
    overall = report.get("overall")
    if overall:
        lines.append(f"macro F1 {100 * overall['macro_f1']:.1f} on {overall['num_steps']} steps "
                     f"(best threshold {report['best_threshold']:.2f}: {100 * overall['best']['macro_f1']:.1f})")
        for source, block in report["per_source"].items():
            lines.append(f"  {source or '(no source)'}: {100 * block['macro_f1']:.1f} on {block['num_steps']} steps")
    first = report["first_error"]["f1"]
    if first is not None:
        lines.append(f"first-error F1 (mean over subsets) {100 * first:.1f}")
    if report["too_long"]["count"]:
        lines.append(f"{report['too_long']['count']} solutions longer than the context "
                     f"({report['too_long']['context_length']} tokens) were not scored")
    return "\n".join(lines)
