"""LLM-judge job throughput, end to end: a real `celery worker` runs a judge job against a real
OpenAI-compatible server process (workers.generation.serve --scripted-judge --concurrent).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepmark_bench CELERY_BROKER_URL=redis://127.0.0.1:6379/15 \\
        .venv/bin/python benchmarks/judge_throughput.py [--solutions 400] [--steps 8] [--delay 0]

The scripted judge answers at once (or after --delay seconds per request, a stand-in for model
time), so the figure is Stepmark's own overhead per solution: reading the solution, its steps and
image from PostgreSQL, the chat request with the image as a data URL and a JSON schema, the HTTP
round trip, parsing the verdicts, the upsert of the labels and the priority update, with
`concurrency` requests in flight per chunk. With a real VLM the model's own time dominates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def start_server(port: int, delay: float) -> subprocess.Popen:
    code = (
        "import sys; from workers.generation.scripted_judge import ScriptedJudge; "
        "from workers.generation.serve import OpenAICompatibleServer; "
        f"s = OpenAICompatibleServer(ScriptedJudge(delay={delay}), model='scripted-judge', port={port}, concurrent=True); "
        "print('ready', flush=True); s.httpd.serve_forever()"
    ) if delay else None
    args = ["-c", code] if code else ["-m", "workers.generation.serve", "--scripted-judge", "--concurrent", "--port", str(port)]
    server = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    server.stdout.readline()  # "serving ..." / "ready": listening
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--solutions", type=int, default=400)
    parser.add_argument("--steps", type=int, default=8, help="steps per solution")
    parser.add_argument("--per-chunk", type=int, default=16, help="solutions per chunk")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight per chunk")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds the judge takes per request")
    parser.add_argument("--port", type=int, default=18765)
    args = parser.parse_args()

    servers = {"bench-judge": {"base_url": f"http://127.0.0.1:{args.port}/v1", "model": "scripted-judge"}}
    os.environ["STEPMARK_GENERATION_SERVERS"] = json.dumps(servers)
    media = Path(tempfile.mkdtemp(prefix="judge-bench-"))
    os.environ["MEDIA_ROOT"] = str(media)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepmark.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], check=True, cwd=REPO_ROOT)
    import django

    django.setup()
    from annotation.models import AutoLabel, Project
    from stepmark.celery import app
    from tests.factories import make_solution
    from workers.judge_services import judge_job_start
    from workers.models import Job

    server = start_server(args.port, args.delay)
    app.control.purge()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "stepmark", "worker", "-Q", "default,gpu", "--pool", "solo",
         "--concurrency", "1", "-n", f"judge-bench-{os.getpid()}@bench", "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=REPO_ROOT, env=dict(os.environ),
    )
    project = Project.objects.create(name=f"judge-bench-{os.getpid()}")
    try:
        deadline = time.monotonic() + 90
        while not app.control.ping(destination=[f"judge-bench-{os.getpid()}@bench"], timeout=0.5):
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not start")
        for n in range(args.solutions):
            steps = [f"Step text {i} of solution {n}: 2 + {i} = {2 + i}." for i in range(args.steps)]
            if n % 10 == 3:
                steps[2] += " [judge:-1]"
            make_solution(project, f"q{n // 4}", steps, key=f"m{n % 4}")
        started = time.monotonic()
        job = judge_job_start(project=project, server="bench-judge", solutions_per_chunk=args.per_chunk,
                              concurrency=args.concurrency)
        while not Job.objects.filter(pk=job.pk, status__in=["done", "failed", "cancelled"]).exists():
            time.sleep(0.05)
        seconds = time.monotonic() - started
        job.refresh_from_db()
        if job.status != "done":
            raise SystemExit(f"job {job.status}: {job.error}")
        labels = AutoLabel.objects.filter(step__solution__item__project=project, kind="judge").count()
        print(f"{args.solutions} solutions x {args.steps} steps, {args.per_chunk} per chunk, concurrency "
              f"{args.concurrency}, judge delay {args.delay:g}s: {seconds:.2f} s, "
              f"{args.solutions / seconds:.1f} solutions/s, {labels / seconds:.0f} step labels/s")
        print(f"counts: {json.dumps(job.counts)}")
    finally:
        worker.terminate()
        server.terminate()
        worker.wait(timeout=30)
        server.wait(timeout=30)
        project.delete()


if __name__ == "__main__":
    main()
