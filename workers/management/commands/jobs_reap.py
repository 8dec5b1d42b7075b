"""manage.py jobs_reap: re-send job chunks no worker will run otherwise (what beat does every interval)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from workers.services import QueueUnavailable, jobs_reap


class Command(BaseCommand):
    help = "Re-send chunks of unfinished jobs whose worker died (lease expired) or that never reached the broker."

    def handle(self, *args, **options):
        try:
            result = jobs_reap()
        except QueueUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"re-sent {result.chunks} chunks of {result.jobs} jobs")
