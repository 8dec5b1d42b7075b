"""manage.py setup_retraining --project NAME --every-minutes 60 --min-new-labels 200 [--backbone DIR]"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from prm.schedule import retraining_schedule_set


class Command(BaseCommand):
    help = "Create or update a project's scheduled PRM retraining (a django-celery-beat PeriodicTask)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project name.")
        parser.add_argument("--every-minutes", type=int, default=60, help="How often beat checks for new labels.")
        parser.add_argument("--min-new-labels", type=int, default=200, help="Retrain after this many new labels.")
        parser.add_argument("--backbone", help="Backbone folder to train from (default: the last run's).")
        parser.add_argument("--config", help="Training settings as JSON (prm.core.training_config.TrainConfig fields).")
        parser.add_argument("--margin", type=float, help="Macro F1 gain a candidate needs to become live (0.01).")
        parser.add_argument("--disable", action="store_true", help="Keep the schedule but stop running it.")

    def handle(self, *args, project: str, every_minutes: int, min_new_labels: int, backbone: str | None,
               config: str | None, margin: float | None, disable: bool, **options):
        target = Project.objects.filter(name=project).first()
        if target is None:
            raise CommandError(f"no project named {project!r}")
        try:
            settings = json.loads(config) if config else {}
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not JSON: {exc}") from exc
        if backbone:
            settings["backbone"] = backbone
        try:
            task = retraining_schedule_set(
                project=target, every_minutes=every_minutes, min_new_labels=min_new_labels,
                config=settings or None, margin=margin, enabled=not disable,
            )
        except (ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from exc
        state = "disabled" if disable else "enabled"
        self.stdout.write(f"{task.name}: every {every_minutes} min, retrain after {min_new_labels} new labels ({state})")
