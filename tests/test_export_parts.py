"""Export jobs in parts: any number of workers write a range of solutions each, then one chunk joins
the parts into the file a single pass writes (JSON lines byte for byte, parquet row for row), and the
parts' files are deleted once the result is committed."""

from __future__ import annotations

import io
import zipfile
from collections import Counter

import pyarrow.parquet as pq
import pytest
from django.core.files.storage import default_storage

from annotation.formats.archive import images_zip_write
from annotation.models import GoldLabel, Solution, Step
from annotation.selectors import ExportFilters, export_records
from annotation.services.dataset_export import dataset_export
from tests.conftest import wait_for
from tests.factories import make_solution
from workers.export_runner import run_export
from workers.export_services import export_chunks, export_job_start
from workers.models import Job, JobChunk, chunk_file_path
from workers.services import ChunkLost, chunk_claim


def _gold_project(project, n: int, *, shared_item_every: int = 4) -> list[Solution]:
    """n solutions of two gold-labelled steps; every `shared_item_every`-th item has a second solution,
    so an item's image can fall in two parts."""
    solutions = []
    for i in range(n):
        external_id = f"q{i // 2}" if i % shared_item_every == 1 else f"q{i}"
        solution = make_solution(project, external_id, [f"step one of {i}", f"step two of {i}"], key=f"m{i}",
                                 color=(i * 20 % 255, 40, 90))
        for step, value in zip(solution.steps.order_by("index"), (1, -1 if i % 3 else 0), strict=True):
            GoldLabel.objects.create(step=step, value=value, source=GoldLabel.Source.IMPORTED, origin="test")
        solutions.append(solution)
    return solutions


def _single_pass(project, format_name: str, **options) -> bytes:
    out = io.BytesIO()
    dataset_export(project=project, format_name=format_name, out=out,
                   filters=ExportFilters(label_source="gold"), options=options)
    return out.getvalue()


def _parts_folder(job: Job) -> list[str]:
    folder = chunk_file_path(JobChunk(job_id=job.pk), "x").rsplit("/", 1)[0]
    try:
        return default_storage.listdir(folder)[1]
    except FileNotFoundError:
        return []


def test_ranges_meet_end_to_end_and_the_join_comes_last():
    chunks = export_chunks([3, 4, 9, 10, 11, 20, 31], per_part=3)
    assert [c["params"] for c in chunks] == [
        {"first_id": 1, "last_id": 9}, {"first_id": 10, "last_id": 20}, {"first_id": 21, "last_id": 31}, {"join": True}
    ]
    assert [c["size"] for c in chunks] == [3, 3, 1, 0] and [c.get("stage", 0) for c in chunks] == [0, 0, 0, 1]
    # Nothing selected: one empty part, so the job still writes its (empty) file.
    assert export_chunks([], per_part=3)[0] == {"params": {"first_id": 1, "last_id": 0}, "size": 0}


@pytest.mark.django_db(transaction=True)
def test_three_workers_write_the_parts_and_one_joins_them_into_the_single_pass_file(
    celery_worker_process, celery_workers, project
):
    solutions = _gold_project(project, 14)
    celery_workers(2)  # three worker processes on one broker and one database
    job = export_job_start(project=project, format_name="visualprocessbench", label_source="gold", images_zip=True,
                           solutions_per_part=3)
    job = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=["done", "failed"]).first(), timeout=120,
                   message="export job")
    assert job.status == "done", job.error

    chunks = list(job.chunks.order_by("index"))
    parts, join = chunks[:-1], chunks[-1]
    assert len(parts) == 5 and join.params == {"join": True} and join.stage == 1
    assert all(c.status == "done" and c.attempts == 1 for c in chunks), [(c.index, c.status, c.attempts) for c in chunks]
    assert join.claimed_at >= max(part.finished_at for part in parts), "the join ran before a part was done"
    assert job.progress_done == job.progress_total == len(solutions)
    assert job.counts["solutions_read"] == len(solutions)

    expected = _single_pass(project, "visualprocessbench")
    with job.result_file.open("rb") as handle:
        assert handle.read() == expected
    assert job.counts["records_written"] == len(expected.splitlines()) == len(solutions)
    reference = io.BytesIO()
    images_zip_write(records=export_records(project=project, filters=ExportFilters(label_source="gold")), out=reference)
    with job.images_file.open("rb") as handle, zipfile.ZipFile(handle) as joined:
        names = joined.namelist()
        assert len(names) == len(set(names)), "an image two parts share was written twice"
        assert sorted(names) == sorted(zipfile.ZipFile(reference).namelist())
        assert job.counts["images"] == len(names)
    # Every part's file is gone once the joined file is committed; nothing refers to one.
    assert all(not part.result_file for part in JobChunk.objects.filter(job=job))
    assert _parts_folder(job) == []
    by_worker = Counter(c.claimed_by for c in chunks)
    print(f"\nexport of {len(solutions)} solutions in {len(parts)} parts + join; chunks per worker {dict(by_worker)}")


@pytest.mark.django_db
def test_parquet_parts_join_row_for_row_and_an_emptied_part_is_skipped(
    settings, project, django_capture_on_commit_callbacks
):
    settings.STEPMARK_PROGRESS_SIDE_CONNECTION = False  # this test's transaction holds the rows
    project.error_categories_enabled = True
    project.save()
    solutions = _gold_project(project, 9)
    job = export_job_start(project=project, format_name="trl-stepwise", label_source="gold", solutions_per_part=3)
    # The first part's solutions go before it runs: its part has no rows (and, without a record, the
    # schema without error categories); the join must take the schema of the parts that have rows.
    first = job.chunks.get(index=0).params
    Solution.objects.filter(pk__range=(first["first_id"], first["last_id"])).delete()
    expected = pq.read_table(io.BytesIO(_single_pass(project, "trl-stepwise")))
    assert expected.num_rows == len(solutions) - 3 and "error_categories" in expected.column_names

    chunks = list(job.chunks.order_by("index"))
    join = chunks[-1]
    assert chunk_claim(chunk_id=join.pk) is None, "the join was claimed before its parts were done"
    assert set(JobChunk.objects.filter(job=job).ready().values_list("pk", flat=True)) == {c.pk for c in chunks[:-1]}
    with django_capture_on_commit_callbacks(execute=True):
        for part in chunks[:-1]:
            run_export(chunk_claim(chunk_id=part.pk))
        assert len(_parts_folder(job)) == 3
        default_storage.save(chunk_file_path(JobChunk(job_id=job.pk), "part00001-attempt1.parquet"),
                             io.BytesIO(b"left by a killed attempt"))
        run_export(chunk_claim(chunk_id=join.pk))
    job.refresh_from_db()
    assert job.status == "done"
    with job.result_file.open("rb") as handle:
        joined = pq.read_table(handle)
    assert joined.equals(expected)
    assert _parts_folder(job) == [], "the parts (and a killed attempt's file) outlived the join"


@pytest.mark.django_db
def test_a_part_that_lost_its_claim_leaves_no_file(settings, project):
    settings.STEPMARK_PROGRESS_SIDE_CONNECTION = False
    _gold_project(project, 2)
    job = export_job_start(project=project, format_name="visualprocessbench", label_source="gold")
    part = chunk_claim(chunk_id=job.chunks.get(stage=0).pk)
    JobChunk.objects.filter(pk=part.pk).update(attempts=part.attempts + 1)  # another worker took it over
    with pytest.raises(ChunkLost):
        run_export(part)
    assert _parts_folder(job) == []
    assert Step.objects.count() == 4  # nothing else was touched


@pytest.mark.django_db
def test_cancelling_an_export_deletes_the_parts_written_so_far(settings, project, django_capture_on_commit_callbacks):
    from workers.services import job_cancel

    settings.STEPMARK_PROGRESS_SIDE_CONNECTION = False
    _gold_project(project, 4)
    job = export_job_start(project=project, format_name="visualprocessbench", label_source="gold", solutions_per_part=2)
    with django_capture_on_commit_callbacks(execute=True):
        run_export(chunk_claim(chunk_id=job.chunks.get(index=0).pk))
        assert len(_parts_folder(job)) == 1
        assert job_cancel(job=job)
    assert _parts_folder(job) == []
    assert not JobChunk.objects.filter(job=job).exclude(result_file="").exists()
    assert chunk_claim(chunk_id=job.chunks.get(stage=1).pk) is None
