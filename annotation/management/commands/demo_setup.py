"""manage.py demo_setup: demo accounts, the demo project and its data. Safe to run on every start."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction
from tqdm import tqdm

from annotation.formats.records import DatasetImportError
from annotation.models import Membership, Project, Role
from annotation.services.dataset_import import dataset_import

DEMO_PROJECT = "MATH-V testmini (demo)"
DEMO_ACCOUNTS = {"demo-annotator": Role.ANNOTATOR, "demo-reviewer": Role.REVIEWER, "demo-admin": Role.ADMIN}
# Apps whose models the demo admin may manage in the Django admin.
ADMIN_APPS = ("annotation", "prm", "workers")


def accounts_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-accounts.txt"


def read_passwords(path: Path) -> dict[str, str]:
    passwords: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, sep, password = line.strip().partition(" ")
            if sep and name in DEMO_ACCOUNTS and password.strip():
                passwords[name] = password.strip()
    return passwords


def write_passwords(path: Path, passwords: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name} {passwords[name]}\n" for name in DEMO_ACCOUNTS))
    path.chmod(0o600)


class Command(BaseCommand):
    help = "Create the demo accounts and the demo project, importing MATH-V testmini when the project is empty."

    def add_arguments(self, parser):
        parser.add_argument("--url", default=f"http://{os.environ.get('STEPMARK_ADDR', '127.0.0.1:8000')}/")

    def handle(self, *args, url: str, **options):
        path = accounts_file()
        passwords = read_passwords(path)
        with transaction.atomic():
            users = self.ensure_accounts(passwords)
            project = self.ensure_project(users)
        write_passwords(path, passwords)
        self.import_demo_data(project)
        self.ensure_tiny_backbone()
        self.stdout.write(f"Stepmark demo at {url}  (accounts kept in {path})")
        for name, role in DEMO_ACCOUNTS.items():
            self.stdout.write(f"  {role.label.lower():<10} {name} / {passwords[name]}")

    def ensure_tiny_backbone(self) -> None:
        """A tiny Qwen2-VL with random weights, built locally: a policy and PRM backbone to try the workers on."""
        directory = Path(settings.STEPMARK_DEFAULT_BACKBONE)
        if (directory / "config.json").exists():
            self.stdout.write(f"Tiny local model: {directory}")
            return
        from prm.core.tiny_models import build_tiny_qwen2_vl

        build_tiny_qwen2_vl(directory)
        self.stdout.write(
            f"Built a tiny local model (random weights) at {directory}: use it as the PRM backbone or a "
            "transformers policy; point STEPMARK_DEFAULT_BACKBONE at a real model folder for real use."
        )

    def ensure_accounts(self, passwords: dict[str, str]) -> dict:
        User = get_user_model()
        users = {}
        for name, role in DEMO_ACCOUNTS.items():
            user, created = User.objects.get_or_create(username=name)
            # A password is set only when made here or when the account is new, so changes made later stay.
            if created or name not in passwords:
                passwords.setdefault(name, secrets.token_urlsafe(12))
                user.set_password(passwords[name])
                user.save()
            if role == Role.ADMIN:
                if not user.is_staff:
                    user.is_staff = True
                    user.save(update_fields=["is_staff"])
                # Every run, so models added since the last start are covered too.
                user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
            users[name] = user
        return users

    def ensure_project(self, users: dict) -> Project:
        project, _ = Project.objects.get_or_create(name=DEMO_PROJECT, defaults={"overlap": 2})
        for name, role in DEMO_ACCOUNTS.items():
            Membership.objects.update_or_create(project=project, user=users[name], defaults={"role": role})
        return project

    def import_demo_data(self, project: Project) -> None:
        if project.items.exists():
            return
        folder = Path(settings.STEPMARK_DEMO_DATA_DIR) / "math-v-testmini"
        if not folder.is_dir():
            self.stdout.write(f"Note: no demo data at {folder}; the demo project stays empty.")
            return
        with tqdm(desc="demo data", unit=" solutions", file=getattr(self.stderr, "_out", None), disable=None) as bar:
            try:
                result = dataset_import(project=project, format_name="mathv", path=folder, progress=bar.update)
            except DatasetImportError as exc:
                # The app should still start; the project stays empty and the next start tries again.
                self.stderr.write(f"Note: the demo data could not be imported ({exc}); the demo project stays empty.")
                return
        self.stdout.write(
            f"Imported {result.items_created} questions and {result.solutions_created} solutions into {project.name!r}."
        )
