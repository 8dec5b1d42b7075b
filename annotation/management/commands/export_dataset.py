"""manage.py export_dataset --project NAME --format FMT --out FILE [--images-zip FILE] [options] [filters]"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from annotation.api.streaming import format_images_write
from annotation.formats.step_labels import DEFAULT_NEUTRAL, NEUTRAL_CHOICES
from annotation.models import Project
from annotation.selectors import LABEL_SOURCES, ExportFilters, export_records
from annotation.services.dataset_export import (
    EXPORT_FORMATS,
    ExportRefused,
    dataset_export_file,
    export_module,
)
from prm.core.merge import MergePolicy


def parse_moment(text: str) -> datetime:
    """An ISO date or date-time; naive values are in the project's time zone."""
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise CommandError(f"{text!r} is not a date (YYYY-MM-DD) or ISO date-time")
        moment = datetime.combine(day, time.min)
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = "Export a project's solutions and step labels to a file in a dataset format."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project name.")
        parser.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS), dest="format_name")
        parser.add_argument("--out", required=True, type=Path, help="File to write.")
        parser.add_argument("--images-zip", type=Path, help="Also write the records' images into this zip.")
        parser.add_argument(
            "--file-format", choices=("jsonl", "parquet"),
            help="trl-stepwise: the file kind (default: from the --out suffix, else parquet); a conflicting suffix is refused.",
        )
        parser.add_argument(
            "--neutral", choices=NEUTRAL_CHOICES, default=DEFAULT_NEUTRAL,
            help="visualprm400k, trl-stepwise: neutral steps become positive or negative labels, "
            "or skip (the row ends before the first neutral step).",
        )
        parser.add_argument(
            "--image-root",
            help="visualprm400k: the image folder InternVL's meta json names as root "
            "(default: where --images-zip is to be unzipped, its name without .zip, else the --out folder).",
        )
        parser.add_argument("--label-source", choices=LABEL_SOURCES, default="merged")
        parser.add_argument("--only-adjudicated", action="store_true", help="Gold labels set by a reviewer only.")
        parser.add_argument("--only-agreed", action="store_true", help="Human labels all annotators agree on.")
        parser.add_argument("--complete-only", action="store_true", help="Skip solutions with an unlabelled step.")
        parser.add_argument("--since", type=parse_moment, help="Solutions created at or after (date or date-time).")
        parser.add_argument("--until", type=parse_moment, help="Solutions created before (date or date-time).")
        policy = parser.add_argument_group("merge policy (--label-source merged: the labels a PRM trains on)")
        policy.add_argument("--mc-label", choices=("value", "advantage"), default="value")
        policy.add_argument("--mc-threshold", type=float, default=0.0, help="Value label: + when mc > this.")
        policy.add_argument("--advantage-tolerance", type=float, default=0.0, help="Advantage label: = within this.")
        policy.add_argument("--consensus-filter", action="store_true",
                            help="No label where the machine label disagrees with the human one.")
        policy.add_argument("--use-judge", action="store_true",
                            help="The LLM judge's verdict as a source, after the MC / imported machine label.")
        policy.add_argument("--judge-first", action="store_true", help="With --use-judge: the judge before MC.")
        policy.add_argument("--judge-source", default="",
                            help="Which judge model's labels (--label-source judge and merged; default: each step's newest).")
        policy.add_argument("--mc-judge-consensus", action="store_true",
                            help="Keep a machine-labelled step only where the MC label and the judge agree.")
        policy.add_argument("--merge-policy", type=_policy_json, metavar="JSON",
                            help="Every merge setting at once: a training run's recorded merge_policy object.")

    def handle(self, *args, project: str, format_name: str, out: Path, images_zip: Path | None, **options):
        # Thin: parse, call dataset_export_file, report.
        target = Project.objects.filter(name=project).first()
        if target is None:
            raise CommandError(f"no project named {project!r}")
        chosen = {
            "only_adjudicated": options["only_adjudicated"], "complete_only": options["complete_only"],
            "since": options["since"], "until": options["until"],
        }
        try:
            if options["merge_policy"] is not None:
                filters = ExportFilters.for_policy(options["merge_policy"], **chosen)
            else:
                filters = ExportFilters(
                    label_source=options["label_source"], only_agreed=options["only_agreed"],
                    mc_label=options["mc_label"], mc_threshold=options["mc_threshold"],
                    advantage_tolerance=options["advantage_tolerance"],
                    consensus_filter=options["consensus_filter"], use_judge=options["use_judge"],
                    judge_first=options["judge_first"], judge_source=options["judge_source"],
                    mc_judge_consensus=options["mc_judge_consensus"], **chosen,
                )
        except ValueError as exc:
            raise CommandError(f"merge policy: {exc}") from exc
        image_root = options["image_root"]
        if image_root is None and images_zip is not None:
            image_root = str(images_zip.resolve().with_suffix(""))
        progress_file = self.stderr._out
        try:
            with tqdm(desc=f"export {out.name}", unit=" solutions", file=progress_file, disable=None) as bar:
                result = dataset_export_file(
                    project=target, format_name=format_name, path=out, filters=filters,
                    options={"neutral": options["neutral"]}, file_format=options["file_format"],
                    image_root=image_root, progress=bar.update,
                )
        except ExportRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Wrote {result.written} solutions to {out}")
        if result.meta_path is not None:
            self.stdout.write(
                f"Wrote InternVL's meta json to {result.meta_path} (pass it as --meta_path; images under {result.meta_root})"
            )
            if out.suffix != ".jsonl":
                self.stderr.write(f"InternVL's loader takes annotation files ending in jsonl only; rename {out.name}")
        if images_zip is not None:
            records = export_records(project=target, filters=filters)
            with images_zip.open("wb") as handle:
                records = tqdm(records, desc="images", unit=" solutions", file=progress_file, disable=None)
                count = format_images_write(module=export_module(format_name), records=records, out=handle)
            self.stdout.write(f"Wrote {count} images to {images_zip}")



def _policy_json(text: str) -> MergePolicy:
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return MergePolicy.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a merge policy: {exc}") from exc
