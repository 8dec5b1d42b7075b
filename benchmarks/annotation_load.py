"""Labelling load: 50 annotators on the REST API of the app under gunicorn on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepmark_bench \\
        .venv/bin/python benchmarks/annotation_load.py --seconds 30

It migrates the database, builds a fresh project (overlap 3, machine hints shown, one image per
item) with enough solutions, creates the annotators with API tokens and starts gunicorn (sync
workers by default) on a free loopback port. Each simulated annotator is an asyncio client with
its own HTTP/1.1 connection (kept alive where the server allows, opened again where it closes
it, as sync workers do after each response), looping: POST next/ -> PUT a label on every step (sometimes changing one
again) -> POST submit/, for --seconds. Every acknowledged (2xx) label write is recorded; after
gunicorn stops, the database must hold each acknowledged label exactly once with the last
acknowledged value, no label nobody was told about, and one LabelChange per acknowledged change.
Each annotator pauses --think-ms (mean, jittered) before a request: with 50 clients back to
back (--think-ms 0) the latency is simply 50 / throughput, so the p95 target needs pacing.
Besides latency and rate it prints the server's own CPU per request (gunicorn workers plus their
PostgreSQL backends, after warm-up), the figure that does not depend on what else the machine runs.
Targets on 2 cores: label save p95 < 50 ms, >= 300 label saves/s, nothing lost.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/h16"
PROJECT_NAME = "load-benchmark"
TARGET_P95_MS = 50.0
TARGET_LABELS_PER_SECOND = 300.0
LABEL_CHOICES = (1, 1, 1, 0, -1)  # mostly correct steps, as in real sets
RELABEL_RATE = 0.1  # share of solutions where the annotator changes one label again
STAGGER_SECONDS = 1.0  # annotators' first requests are spread over this long


# ---------------------------------------------------------------- setup (Django, main process)


def ensure_database(url: str) -> None:
    """Create the database named in `url` if it does not exist (connects to the `postgres` one)."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_libpq_url(url, database="postgres"), autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            connection.execute(f'CREATE DATABASE "{name}"')


def _libpq_url(url: str, *, database: str | None = None) -> str:
    """`url` for psycopg: Django's query options dropped, a unix-socket `host=` kept (the embedded server)."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [])
    query = urlencode({"host": host[-1]}) if host else ""
    return parts._replace(path=f"/{database}" if database else parts.path, query=query).geturl()


def django_setup() -> None:
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepmark.settings")
    import django

    django.setup()


def _png() -> bytes:
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 48), (40, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def build_project(*, solutions: int, steps_per_solution: int, annotators: int, overlap: int) -> tuple[int, dict[str, str]]:
    """A fresh project with `solutions` one-solution items; returns (project id, username -> token)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction
    from rest_framework.authtoken.models import Token

    from annotation.models import (
        Assignment,
        AutoLabel,
        HumanLabel,
        Item,
        ItemImage,
        LabelChange,
        Membership,
        Project,
        Role,
        Solution,
        Step,
    )
    from annotation.services.images import image_store

    call_command("migrate", verbosity=0)
    Project.objects.filter(name=PROJECT_NAME).delete()
    rng = random.Random(16)
    with transaction.atomic():
        project = Project.objects.create(name=PROJECT_NAME, overlap=overlap, show_machine_labels=True)
        image, _ = image_store(data=_png())
        items = Item.objects.bulk_create(
            Item(project=project, external_id=f"q{n:06d}", question=f"Question {n}: what is {n}+3?", answer=str(n + 3))
            for n in range(solutions)
        )
        ItemImage.objects.bulk_create(
            ItemImage(item=item, image=image, position=0, source_path="images/shared.png") for item in items
        )
        texts = [f"Step {i + 1}: we compute the value and carry it forward." for i in range(steps_per_solution)]
        rows = Solution.objects.bulk_create(
            Solution(item=item, key="policy", policy_model="policy", response="\n\n".join(texts), final_answer=item.answer)
            for item in items
        )
        steps = Step.objects.bulk_create(
            Step(solution=solution, index=i, text=text) for solution in rows for i, text in enumerate(texts)
        )
        AutoLabel.objects.bulk_create(
            AutoLabel(step=step, kind=AutoLabel.Kind.MC, source="mc-bench", score=right / 16, num_correct=right, num_total=16)
            for step in steps
            for right in [rng.randint(0, 16)]
        )
        User = get_user_model()
        tokens = {}
        for n in range(annotators):
            username = f"load-annotator-{n:02d}"
            user, _ = User.objects.get_or_create(username=username)
            Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
            token, _ = Token.objects.get_or_create(user=user)
            tokens[username] = token.key
    with connection.cursor() as cursor:
        # Earlier runs' deleted rows and fresh tables: clear the dead rows and give the planner
        # real row counts, as autovacuum would on a server that has been running a while.
        for model in (
            Project, Item, ItemImage, Solution, Step, AutoLabel, Assignment, HumanLabel, LabelChange, Membership,
            Token, User,
        ):
            cursor.execute(f'VACUUM ANALYZE "{model._meta.db_table}"')
        cursor.execute("SHOW autovacuum")
        if cursor.fetchone()[0] != "on":
            print("note: this PostgreSQL runs with autovacuum off; dead rows pile up during the run")
    return project.id, tokens


# ---------------------------------------------------------------- gunicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(*, port: int, workers: int, threads: int, worker_class: str, env: dict) -> subprocess.Popen:
    command = [
        str(REPO_ROOT / ".venv" / "bin" / "gunicorn"), "stepmark.wsgi",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", worker_class,
        "--threads", str(threads), "--keep-alive", "30", "--backlog", "256", "--log-level", "warning",
    ]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode} at start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("gunicorn did not start listening within 60 s")


def stop_gunicorn(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)  # graceful: finishes in-flight requests
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------- clients (asyncio, raw HTTP/1.1)


class Connection:
    """One HTTP/1.1 connection, reopened when the server closes it: the cheapest client, so the 2 cores go to the server."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.headers = f"Host: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\nAccept: application/json\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\n{self.headers}Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        try:
            self.writer.write(head.encode() + payload)
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionError("server closed the connection")
            status = int(status_line.split()[1])
            length, closing = 0, False
            while True:
                line = await self.reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    closing = True
            data = await self.reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise
        if closing:
            self.close()
        return status, (json.loads(data) if data and data[:1] in (b"{", b"[") else None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Tally:
    label_ms: list[float] = field(default_factory=list)
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    # (username, step id) -> last acknowledged value; and how many acknowledged writes changed it
    acked: dict[tuple[str, int], int] = field(default_factory=dict)
    acked_changes: Counter = field(default_factory=Counter)
    unacknowledged: set[tuple[str, int]] = field(default_factory=set)
    submitted: int = 0
    queue_empty: int = 0


async def annotator(
    username: str, token: str, *, port: int, project_id: int, deadline: float, think: float, tally: Tally, seed: int
) -> None:
    rng = random.Random(seed)
    connection = Connection(port, token)
    base = f"/api/projects/{project_id}"

    async def timed(bucket: list[float], kind: str, method: str, path: str, body=None):
        if think:  # reading the step before the click; jittered so the annotators drift apart
            await asyncio.sleep(think * rng.uniform(0.5, 1.5))
        started = time.perf_counter()
        try:
            status, data = await connection.request(method, path, body)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.errors[f"{kind}: {type(exc).__name__}"] += 1
            return None, None
        bucket.append((time.perf_counter() - started) * 1000)
        if status >= 300:
            tally.errors[f"{kind}: HTTP {status}"] += 1
        return status, data

    async def label(assignment_id: int, step_id: int, value: int) -> None:
        path = f"{base}/assignments/{assignment_id}/steps/{step_id}/label/"
        status, data = await timed(tally.label_ms, "label", "PUT", path, {"value": value})
        key = (username, step_id)
        if status is not None and 200 <= status < 300 and data and data.get("value") == value:
            if tally.acked.get(key) != value:
                tally.acked_changes[key] += 1
            tally.acked[key] = value
        else:
            tally.unacknowledged.add(key)

    # Annotators do not all ask for their first item in the same millisecond: spread the starts
    # over the first second (measured all the same).
    await asyncio.sleep(rng.uniform(0, STAGGER_SECONDS))
    try:
        while time.monotonic() < deadline:
            status, data = await timed(tally.next_ms, "next", "POST", f"{base}/next/")
            if status == 204:
                tally.queue_empty += 1
                return
            if status != 201:
                await asyncio.sleep(0.05)
                continue
            assignment_id = data["assignment"]["id"]
            steps = [step["id"] for step in data["solution"]["steps"]]
            for step_id in steps:
                if time.monotonic() >= deadline:
                    return
                await label(assignment_id, step_id, rng.choice(LABEL_CHOICES))
            if rng.random() < RELABEL_RATE and time.monotonic() < deadline:
                step_id = rng.choice(steps)
                current = tally.acked.get((username, step_id), 1)
                await label(assignment_id, step_id, rng.choice([v for v in (-1, 0, 1) if v != current]))
            if time.monotonic() >= deadline:
                return
            status, _ = await timed(tally.submit_ms, "submit", "POST", f"{base}/assignments/{assignment_id}/submit/", {"seconds": 5})
            if status == 200:
                tally.submitted += 1
    finally:
        connection.close()


def run_event_loop(coroutine):
    """uvloop where installed (the dev extra): the clients share the server's 2 cores, and uvloop
    spends about 40% less CPU per request than asyncio's own loop (0.38 against 0.62 ms here)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def run_clients(
    tokens: dict[str, str], *, port: int, project_id: int, seconds: float, think: float, tally: Tally, on_start=None
) -> float:
    async def warm_up(token: str) -> None:
        # Django builds URL resolvers, serializers and connections on first use; not what is measured.
        connection = Connection(port, token)
        try:
            await connection.request("GET", f"/api/projects/{project_id}/")
        finally:
            connection.close()

    await asyncio.gather(*(warm_up(token) for token in tokens.values()))
    if on_start is not None:
        on_start()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(
            annotator(name, token, port=port, project_id=project_id, deadline=deadline, think=think, tally=tally, seed=n)
            for n, (name, token) in enumerate(sorted(tokens.items()))
        )
    )
    return time.monotonic() - started


# ---------------------------------------------------------------- verification and report


def verify(project_id: int, tally: Tally) -> dict[str, int]:
    """Compare what the clients were told with what the database holds."""
    from django.db import connection
    from django.db.models import Count

    from annotation.models import HumanLabel, LabelChange

    connection.close()  # a fresh connection after gunicorn's writes
    rows = list(
        HumanLabel.objects.filter(step__solution__item__project_id=project_id)
        .values("annotator__username", "step_id")
        .annotate(n=Count("id"))
        .values_list("annotator__username", "step_id", "value", "n")
    )
    stored: dict[tuple[str, int], int] = {}
    duplicated = 0
    for username, step_id, value, n in rows:
        duplicated += n > 1
        stored[(username, step_id)] = value
    lost = sum(1 for key in tally.acked if key not in stored)
    wrong_value = sum(1 for key, value in tally.acked.items() if key in stored and stored[key] != value)
    # A write whose reply never came may or may not have landed; only those may be unexplained.
    unexplained = sum(1 for key in stored if key not in tally.acked and key not in tally.unacknowledged)
    changes = Counter(
        dict(
            ((username, step_id), n)
            for username, step_id, n in LabelChange.objects.filter(step__solution__item__project_id=project_id, is_gold=False)
            .values("annotator__username", "step_id")
            .annotate(n=Count("id"))
            .values_list("annotator__username", "step_id", "n")
        )
    )
    history_mismatch = sum(
        1 for key in set(changes) | set(tally.acked_changes)
        if key not in tally.unacknowledged and changes[key] != tally.acked_changes[key]
    )
    return {
        "acknowledged labels": len(tally.acked),
        "stored labels": len(stored),
        "lost": lost,
        "wrong value": wrong_value,
        "duplicated": duplicated,
        "unexplained": unexplained,
        "history mismatches": history_mismatch,
        "history rows": sum(changes.values()),
        "acknowledged changes": sum(tally.acked_changes.values()),
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class LoadSampler(threading.Thread):
    """The 1-minute load average once a second while the clients run (max and last)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            self.samples.append(os.getloadavg()[0])


def cpu_times() -> tuple[float, float, float]:
    """(busy, total, steal) jiffies of the whole machine, from /proc/stat.

    Steal is time a virtual machine's cores waited for the host: when other guests load the host,
    every request costs more CPU time, and the figures of this run are worse for it.
    """
    with open("/proc/stat") as stat:
        fields = [float(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    steal = fields[7] if len(fields) > 7 else 0.0
    return sum(fields) - idle, sum(fields), steal


def host_speed_ms() -> float:
    """CPU milliseconds a fixed pure-Python loop takes: lower is a faster host.

    On a shared virtual machine the same work costs more CPU time when neighbours load the
    host's caches and memory (steal stays near zero); print it so runs can be compared.
    """
    started = time.process_time()
    total = 0
    for number in range(2_000_000):
        total += number
    return (time.process_time() - started) * 1000


def process_cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


def server_pids(gunicorn: subprocess.Popen, database_url: str) -> tuple[list[int], list[int]]:
    """The gunicorn master and workers; the PostgreSQL backends serving this database."""
    import psycopg  # not Django's connection: this runs inside the clients' event loop

    with open(f"/proc/{gunicorn.pid}/task/{gunicorn.pid}/children") as children:
        workers = [gunicorn.pid, *map(int, children.read().split())]
    with psycopg.connect(_libpq_url(database_url)) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [urlsplit(database_url).path.lstrip("/")],
        ).fetchall()
    return workers, [row[0] for row in rows]


def main(argv: list[str] | None = None) -> int:
    cores = os.cpu_count() or 2
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--solutions", type=int, default=0, help="default: enough for 600 labels/s")
    parser.add_argument("--steps", type=int, default=6, help="steps per solution")
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument(
        "--think-ms", type=float, nargs="+", default=[80],
        help="mean pause before each request (0: back to back; with 50 clients latency is then 50/throughput); "
        "several values run one after another and end with a table of rate against latency",
    )
    # Django is CPU-bound under the GIL: plain processes (sync workers, one request each) let the
    # kernel share the cores fairly, and enough of them cover the time each waits on PostgreSQL.
    # Measured on 2 cores: sync x12 gave ~10% more saves/s and half the p95 of gthread 4x2 (the
    # best of 2x6, 3x4, 4x2, 6x1), at the price of a new connection per request (the client's).
    parser.add_argument("--worker-class", choices=["sync", "gthread"], default="sync")
    parser.add_argument("--workers", type=int, default=6 * cores)
    parser.add_argument("--threads", type=int, default=1, help="per worker (gthread only)")
    args = parser.parse_args(argv)

    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("DATABASE_URL must name a PostgreSQL database")
    media = tempfile.mkdtemp(prefix="stepmark-load-")
    os.environ.update({"DATABASE_URL": database_url, "DEBUG": "false", "MEDIA_ROOT": media, "STATIC_ROOT": media})
    ensure_database(database_url)
    django_setup()

    results = [run_once(args, think_ms=think, database_url=database_url, cores=cores, media=media) for think in args.think_ms]
    shutil.rmtree(media, ignore_errors=True)
    if len(results) > 1:
        print(f"\n{'think ms':>9}{'saves/s':>9}{'save p50':>10}{'save p95':>10}{'next p95':>10}{'server CPU ms/req':>19}")
        for r in results:
            print(f"{r['think_ms']:>9.0f}{r['label_rate']:>9.0f}{r['p50']:>10.1f}{r['p95']:>10.1f}{r['next_p95']:>10.1f}{r['cpu_ms']:>19.1f}")
    return 1 if any(r["failed"] for r in results) else 0


def run_once(args, *, think_ms: float, database_url: str, cores: int, media: str) -> dict:
    """One timed run on a fresh project; prints its figures and returns the headline ones."""
    solutions = args.solutions or int(args.seconds * 600 / (args.steps * args.overlap)) + 200
    speed_before = host_speed_ms()
    started = time.monotonic()
    project_id, tokens = build_project(
        solutions=solutions, steps_per_solution=args.steps, annotators=args.annotators, overlap=args.overlap
    )
    from django.db import connections

    connections.close_all()
    print(f"setup: {solutions} solutions x {args.steps} steps, overlap {args.overlap}, "
          f"{args.annotators} annotators ({time.monotonic() - started:.1f} s)")
    port = free_port()
    threads = f" x {args.threads} threads" if args.worker_class == "gthread" else ""
    print(f"gunicorn: {args.workers} {args.worker_class} workers{threads} on 127.0.0.1:{port} ({cores} cores); "
          f"clients on {'uvloop' if importlib.util.find_spec('uvloop') else 'asyncio'}")
    server = start_gunicorn(
        port=port, workers=args.workers, threads=args.threads, worker_class=args.worker_class, env=dict(os.environ)
    )
    tally = Tally()
    sampler = LoadSampler()
    try:
        sampler.start()
        before: dict[str, tuple] = {}

        def on_start() -> None:  # after the warm-up: worker boot and first requests are not counted
            workers, backends = server_pids(server, database_url)
            before["cpu"] = (process_cpu_seconds(workers), process_cpu_seconds(backends), set(backends))
            before["machine"], before["client"] = cpu_times(), time.process_time()

        clients = run_clients(
            tokens, port=port, project_id=project_id, seconds=args.seconds, think=think_ms / 1000, tally=tally,
            on_start=on_start,
        )
        elapsed = run_event_loop(clients)
        sampler.stopped.set()
        machine_after, client_cpu = cpu_times(), time.process_time() - before["client"]
        machine_before = before["machine"]
        workers, backends = server_pids(server, database_url)
        # A backend opened during the run counts whole; one from before counts its growth.
        gunicorn_cpu = process_cpu_seconds(workers) - before["cpu"][0]
        postgres_cpu = process_cpu_seconds([pid for pid in backends if pid not in before["cpu"][2]]) + (
            process_cpu_seconds([pid for pid in backends if pid in before["cpu"][2]]) - before["cpu"][1]
        )
    finally:
        stop_gunicorn(server)
    checks = verify(project_id, tally)

    label_rate = len(tally.label_ms) / elapsed
    print(f"\nran {elapsed:.1f} s; {tally.submitted} assignments submitted; load average (1 min) during the run: "
          f"max {max(sampler.samples, default=0):.2f}, last {sampler.samples[-1] if sampler.samples else 0:.2f}")
    total = max(1.0, machine_after[1] - machine_before[1])
    busy = (machine_after[0] - machine_before[0]) / total
    steal = (machine_after[2] - machine_before[2]) / total
    print(f"machine CPU busy {busy:.0%} of {cores} cores (everything on it, not only this benchmark; "
          f"{steal:.0%} stolen by the host); client CPU {client_cpu:.1f} s; think time {think_ms:.0f} ms mean")
    print(f"host speed: a fixed Python loop took {speed_before:.0f} ms of CPU before the run, "
          f"{host_speed_ms():.0f} ms after (lower is faster; compare runs by it)")
    requests = len(tally.label_ms) + len(tally.next_ms) + len(tally.submit_ms)
    print(f"server CPU: gunicorn {gunicorn_cpu:.1f} s, PostgreSQL backends {postgres_cpu:.1f} s = "
          f"{(gunicorn_cpu + postgres_cpu) * 1000 / max(1, requests):.1f} ms per request ({requests} requests)")
    print(f"{'request':<12}{'count':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, values in (("label save", tally.label_ms), ("next item", tally.next_ms), ("submit", tally.submit_ms)):
        print(f"{name:<12}{len(values):>8}{percentile(values, 50):>9.1f}{percentile(values, 95):>9.1f}{percentile(values, 99):>9.1f}")
    print(f"label saves/s: {label_rate:.0f}")
    print(f"errors: {sum(tally.errors.values())} {dict(tally.errors) if tally.errors else ''}")
    if tally.queue_empty:
        print(f"annotators who ran out of work: {tally.queue_empty} (raise --solutions)")
    for name, value in checks.items():
        print(f"{name}: {value}")

    broken = checks["lost"] + checks["wrong value"] + checks["duplicated"] + checks["unexplained"] + checks["history mismatches"]
    p95 = percentile(tally.label_ms, 95)
    verdict = [
        f"label save p95 {p95:.1f} ms {'<' if p95 < TARGET_P95_MS else '>='} {TARGET_P95_MS:.0f} ms",
        f"{label_rate:.0f} label saves/s {'>=' if label_rate >= TARGET_LABELS_PER_SECOND else '<'} {TARGET_LABELS_PER_SECOND:.0f}",
        "nothing lost" if broken == 0 else f"{broken} label problems",
    ]
    print("targets: " + "; ".join(verdict))
    return {
        "think_ms": think_ms, "label_rate": label_rate, "p50": percentile(tally.label_ms, 50), "p95": p95,
        "next_p95": percentile(tally.next_ms, 95), "cpu_ms": (gunicorn_cpu + postgres_cpu) * 1000 / max(1, requests),
        "failed": bool(broken or tally.errors),
    }

if __name__ == "__main__":
    sys.exit(main())
