"""manage.py import_dataset --project NAME --format FMT PATH [--images PATH] [--option k=v ...]"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.formats.records import DatasetImportError
from annotation.models import Project
from annotation.services.dataset_import import IMPORT_FORMATS, dataset_import


def parse_option(text: str) -> tuple[str, object]:
    """`key=value`; the value is read as JSON when it parses (numbers, booleans), else kept as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--option {text!r}: expected key=value")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


class Command(BaseCommand):
    help = "Import a dataset file (or folder) into a project. All or nothing; re-running imports nothing twice."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Dataset file, or folder for folder formats (mathv).")
        parser.add_argument("--project", required=True, help="Project name.")
        parser.add_argument("--format", required=True, choices=sorted(IMPORT_FORMATS), dest="format_name")
        parser.add_argument("--images", type=Path, help="Folder or zip holding the images the records name.")
        parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="Format option.")
        parser.add_argument("--create-project", action="store_true", help="Create the project when missing.")

    def handle(self, *args, path: Path, project: str, format_name: str, images, option, create_project, **kwargs):
        options = dict(parse_option(text) for text in option)
        if create_project:
            target, _ = Project.objects.get_or_create(name=project)
        else:
            target = Project.objects.filter(name=project).first()
            if target is None:
                raise CommandError(f"no project named {project!r} (pass --create-project to create it)")
        with tqdm(desc=f"import {path.name}", unit=" solutions", file=self.stderr._out, disable=None) as bar:
            try:
                result = dataset_import(
                    project=target, format_name=format_name, path=path, images=images, options=options, progress=bar.update
                )
            except DatasetImportError as exc:
                raise CommandError(str(exc)) from exc
        counts = ", ".join(f"{name.replace('_', ' ')}: {value}" for name, value in result.as_dict().items())
        self.stdout.write(f"Imported into {target.name!r} (import {result.import_id}): {counts}")
