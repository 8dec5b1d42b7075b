"""An export job on 1, 2, ... real Celery worker processes against one pass of the exporter, on a
VisualPRM400K-shaped project (the generator of benchmarks/import_export.py).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepmark_bench \\
        .venv/bin/python benchmarks/export_workers.py --scale 0.1 --workers 1 2

It creates and migrates the database when needed, imports the generated Raw file into a fresh project, times `dataset_export` in one process (the
single pass, as `manage.py export_dataset`), then for each worker count starts that many
`celery worker --pool solo` processes on the default queue, times a visualprm400k-raw export job
from start to done (parts, then the join), checks the job's file is byte for byte the single pass,
and stops the workers. The broker is CELERY_BROKER_URL (default redis://127.0.0.1:6379/12, purged
first). The parts scale with the workers; the join is one process copying the parts, so the figures
say what each costs. Run on a machine with at least as many cores as workers plus the database.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import import_export  # noqa: E402  (the generator and the import phase)

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/12")


def _sha256(handle) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _start_workers(count: int, *, media: Path, log: Path) -> list[subprocess.Popen]:
    from stepmark.celery import app

    env = {**os.environ, "MEDIA_ROOT": str(media), "CELERY_BROKER_URL": BROKER, "OMP_NUM_THREADS": "1"}
    stamp = f"{os.getpid()}-{int(time.time())}"
    nodes = [f"bench{i}-{stamp}@export" for i in range(count)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "stepmark", "worker", "-Q", "default", "--pool", "solo",
             "--concurrency", "1", "-n", node, "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            env=env, cwd=REPO_ROOT, stdout=log.open("a"), stderr=subprocess.STDOUT,
        )
        for node in nodes
    ]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answered = {name for reply in app.control.ping(destination=nodes, timeout=1.0) for name in reply}
        if answered >= set(nodes):
            return processes
        if any(process.poll() is not None for process in processes):
            break
    _stop(processes)
    raise SystemExit(f"workers did not start: see {log}")


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _export_job(project, *, workers: int, media: Path, log: Path, solutions_per_part: int) -> dict:
    from tqdm import tqdm

    from workers.export_services import export_job_start
    from workers.models import Job

    processes = _start_workers(workers, media=media, log=log)
    try:
        started = time.perf_counter()
        job = export_job_start(project=project, format_name="visualprm400k-raw", label_source="mc",
                               solutions_per_part=solutions_per_part)
        with tqdm(total=job.progress_total, desc=f"export job, {workers} worker(s)", unit=" sol", unit_scale=True,
                  leave=False, file=sys.stderr) as bar:
            while True:
                job.refresh_from_db()
                bar.update(job.progress_done - bar.n)
                if job.is_finished:
                    break
                time.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        _stop(processes)
    if job.status != Job.Status.DONE:
        raise SystemExit(f"export job #{job.pk} {job.status}: {job.error}")
    chunks = list(job.chunks.order_by("index"))
    join = chunks[-1]
    with job.result_file.open("rb") as handle:
        digest = _sha256(handle)
    return {
        "workers": workers, "seconds": seconds, "parts": len(chunks) - 1,
        "join_s": (join.finished_at - join.claimed_at).total_seconds(),
        "parts_s": (max(c.finished_at for c in chunks[:-1]) - job.started_at).total_seconds(),
        "workers_used": len({c.claimed_by for c in chunks[:-1]}), "sha256": digest,
        "records": job.counts.get("records_written", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.1, help="fraction of 400,000 solutions (default 0.1)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--solutions-per-part", type=int, default=None, help="default: the job's own")
    args = parser.parse_args()

    from tqdm import tqdm

    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        from benchmarks.annotation_load import ensure_database

        ensure_database(os.environ["DATABASE_URL"])
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], check=True, cwd=REPO_ROOT)
    solutions = max(import_export.SOLUTIONS_PER_QUESTION, round(import_export.FULL_SOLUTIONS * args.scale))
    with tempfile.TemporaryDirectory(prefix="stepmark-bench-export-workers-") as temp:
        work = Path(temp)
        image_paths = import_export.write_images(work / "images")
        with tqdm(total=solutions, desc="generate", unit=" sol", unit_scale=True, leave=False) as bar:
            import_export.generate_raw(work / "raw.jsonl", solutions=solutions, image_paths=image_paths,
                                       progress=bar.update)
        name = f"benchmark export workers {args.scale:g} {int(time.time())}"
        os.environ["CELERY_BROKER_URL"] = BROKER
        import_export._django_setup(work / "media")
        from annotation.models import Project
        from stepmark.celery import app
        from workers.export_services import EXPORT_SOLUTIONS_PER_PART

        app.control.purge()
        import_export.phase_import(work, name, solutions)
        project = Project.objects.get(name=name)
        from django.db import connection

        with connection.cursor() as cursor:  # else autovacuum, woken by the import, runs inside the first timing
            cursor.execute("VACUUM ANALYZE")
        try:
            single = import_export.phase_export(work, name, solutions)
            with (work / "export.jsonl").open("rb") as handle:
                single_digest = _sha256(handle)
            rows = [
                _export_job(project, workers=count, media=work / "media", log=work / "workers.log",
                            solutions_per_part=args.solutions_per_part or EXPORT_SOLUTIONS_PER_PART)
                for count in args.workers
            ]
        finally:
            import_export.phase_cleanup(name)

    print(f"{solutions:,} solutions, {single['steps']:,} steps, {single['bytes'] / 2**20:,.0f} MiB of visualprm400k-raw; "
          f"{os.cpu_count()} CPUs")
    print(f"single pass (one process, export_dataset): {single['seconds']:.1f} s, "
          f"{single['steps'] / single['seconds']:,.0f} steps/s")
    header = f"{'workers':>7} {'parts':>5} {'used':>4} {'job s':>6} {'parts s':>7} {'join s':>6} {'steps/s':>9} {'vs 1':>5}  file"
    print(header)
    print("-" * len(header))
    base = rows[0]["seconds"]
    for row in rows:
        same = "same bytes as the single pass" if row["sha256"] == single_digest else "DIFFERS from the single pass"
        print(f"{row['workers']:>7} {row['parts']:>5} {row['workers_used']:>4} {row['seconds']:>6.1f} "
              f"{row['parts_s']:>7.1f} {row['join_s']:>6.1f} {single['steps'] / row['seconds']:>9,.0f} "
              f"{base / row['seconds']:>5.2f}  {same}")
    print("job s: start to done (parts, then the join); parts s: until the last part was done; used: workers that "
          "took a part")
    if any(row["sha256"] != single_digest for row in rows):
        raise SystemExit("an export job's file differs from the single pass")


if __name__ == "__main__":
    main()
