"""Image files live as long as a committed row points at them, even when two imports share a new image.

Two real imports run at once, each in its own thread with its own PostgreSQL connection. The
first stores a new image and then fails on a later line; the second uses the same image and
succeeds. The first one's clean-up must not delete the file the second one's row points at.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, connections

from annotation.formats.records import DatasetImportError
from annotation.models import Image, Project, Role
from annotation.services.dataset_import import dataset_import
from annotation.services.images import image_files_discard, image_store
from tests.factories import add_member
from tests.test_format_visualprocessbench import png, vpb_record, write_vpb

pytestmark = pytest.mark.django_db(transaction=True)

SHARED = png((12, 34, 56), size=(5, 5))
GOOD_LINE = vpb_record(["images/shared.png"], "A shared picture", ["Look.", "Done."], [1, 1])
BAD_LINE = {"image": ["images/shared.png"], "question": "no response field"}


def someone_waits_on_a_lock() -> bool:
    """Another connection of this database is blocked on a lock (the second import, behind the first)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def in_thread(target, results: dict, key: str) -> threading.Thread:
    def run():
        try:
            results[key] = target()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[key] = exc
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=run, name=key)
    thread.start()
    return thread


def test_failing_import_keeps_the_image_file_a_concurrent_import_committed(tmp_path, client, make_user):
    failing_project = Project.objects.create(name="fails late")
    winning_project = Project.objects.create(name="succeeds")
    failing = write_vpb(tmp_path / "a", [GOOD_LINE, BAD_LINE], {"images/shared.png": SHARED})
    winning = write_vpb(tmp_path / "b", [GOOD_LINE], {"images/shared.png": SHARED})
    results: dict = {}

    def hold_until_the_other_waits(_count: int) -> None:
        # The first batch (one record, the new image) is written; keep the transaction open until the
        # second import is blocked behind it, then go on to the bad line.
        deadline = time.monotonic() + 30
        while not someone_waits_on_a_lock() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)

    first = in_thread(
        lambda: dataset_import(project=failing_project, format_name="visualprocessbench", path=failing,
                               batch_size=1, progress=hold_until_the_other_waits),
        results, "failing",
    )
    # The second starts once the first has written the image file (still uncommitted).
    deadline = time.monotonic() + 30
    while not list(Path(settings.MEDIA_ROOT).rglob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.02)
    second = in_thread(
        lambda: dataset_import(project=winning_project, format_name="visualprocessbench", path=winning),
        results, "winning",
    )
    first.join(60)
    second.join(60)

    assert isinstance(results["failing"], DatasetImportError), results["failing"]
    assert "line 2" in str(results["failing"])
    assert not isinstance(results["winning"], BaseException), results["winning"]
    image = Image.objects.get()
    assert default_storage.exists(image.file.name), "the committed image row points at a deleted file"
    assert winning_project.items.count() == 1 and failing_project.items.count() == 0

    admin = make_user("boss")
    add_member(winning_project, admin, Role.ADMIN)
    client.login(username="boss", password="pw-boss")
    response = client.get(f"/images/{image.sha256}/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == SHARED


def test_discard_removes_only_files_no_row_points_at_and_a_row_gets_its_lost_file_back():
    kept, _ = image_store(data=png((1, 1, 1)))
    orphan_name = f"images/ab/{'ab' * 32}.png"
    default_storage.save(orphan_name, default_storage.open(kept.file.name))
    assert image_files_discard(names=[kept.file.name, orphan_name]) == 1
    assert default_storage.exists(kept.file.name) and not default_storage.exists(orphan_name)

    default_storage.delete(kept.file.name)  # lost, e.g. by an older clean-up
    again, created = image_store(data=png((1, 1, 1)))
    assert (again.pk, created) == (kept.pk, False)
    assert default_storage.exists(kept.file.name), "storing the image again repairs its file"
