"""Import/export throughput on a VisualPRM400K-sized data set (VisualPRM400K-v1.1-Raw).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepmark_bench \\
        .venv/bin/python benchmarks/import_export.py --scale 0.01 0.1 1.0

For each scale (1.0 = 400,000 solutions, ~2.2 million steps with MC counts) it writes a Raw
jsonl plus a small shared images folder in a temp dir, imports it into a fresh project with
`dataset_import(format_name="visualprm400k-raw")`, exports it with
`dataset_export(format_name="visualprm400k-raw", filters=ExportFilters(label_source="mc"))`,
then deletes the project. Import and export each run in a fresh subprocess, so the peak RSS
reported (getrusage max RSS) is that phase's own, Django included; the database server's
memory is not counted. Targets: import >= 25,000 steps/s, export >= 100,000 steps/s, peak
RSS < 1 GiB at full size, cost linear in size.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FULL_SOLUTIONS = 400_000  # VisualPRM400K
SOLUTIONS_PER_QUESTION = 4  # the Raw set samples several responses per question
DISTINCT_IMAGES = 50  # real sets reuse images across questions
MC_SEQUENCES = 16  # VisualPRM: 16 continuations per step
TARGET_IMPORT = 25_000
TARGET_EXPORT = 100_000
TARGET_RSS_MIB = 1024

WORDS = (
    "the angle triangle circle radius area equals therefore so we compute length side since given "
    "point line parallel perpendicular sum of and is by theorem figure shows value option answer"
).split()


# ---------------------------------------------------------------- generator


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def write_images(folder: Path) -> list[str]:
    """Small distinct PNGs, as relative paths the records name."""
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(DISTINCT_IMAGES):
        name = f"images/bench_{index:03d}.png"
        colour = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
        PILImage.new("RGB", (32 + index, 24), colour).save(folder.parent / name)
        paths.append(name)
    return paths


def generate_raw(path: Path, *, solutions: int, image_paths: list[str], progress=None, seed: int = 400) -> int:
    """Write `solutions` Raw records (streaming); returns the number of steps written."""
    rng = random.Random(seed)
    steps_total = 0
    with path.open("w", encoding="utf-8") as out:
        question_id = -1
        question = question_orig = answer = image = ""
        for number in range(solutions):
            if number % SOLUTIONS_PER_QUESTION == 0:
                question_id += 1
                image = image_paths[question_id % len(image_paths)]
                question_orig = f"Question {question_id}: {_sentence(rng, 40)}?"
                question = f"<image>\n{question_orig}\nAnswer the question using a single word or phrase."
                answer = str(rng.randint(1, 500))
            count = rng.randint(2, 9)  # mean 5.5 steps per solution, as VisualPRM400K
            steps, scored = [], []
            correct = MC_SEQUENCES
            for index in range(count):
                text = f"Step {index + 1}: {_sentence(rng, rng.randint(15, 45))}."
                correct = max(0, correct - rng.choice((0, 0, 0, 1, 2, 4)))
                steps.append(text)
                scored.append(
                    {"step": text, "score": correct / MC_SEQUENCES, "num_mc_correct": correct, "num_mc_total": MC_SEQUENCES}
                )
            record = {
                "image": image,
                "question": question,
                "question_orig": question_orig,
                "answer": answer,
                "response": "\n\n".join(steps),
                "steps_with_score": scored,
                "num_mc_sequences": MC_SEQUENCES,
            }
            out.write(json.dumps(record, ensure_ascii=False))
            out.write("\n")
            steps_total += count
            if progress is not None and number % 1000 == 999:
                progress(1000)
    return steps_total


# ---------------------------------------------------------------- phases (run in subprocesses)


def _django_setup(media_root: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepmark.settings")
    os.environ["MEDIA_ROOT"] = str(media_root)
    import django

    django.setup()


def _bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" sol", unit_scale=True, dynamic_ncols=True, leave=False, file=sys.stderr)


def phase_import(work: Path, project_name: str, solutions: int) -> dict:
    from annotation.models import Project
    from annotation.services.dataset_import import dataset_import

    project = Project.objects.create(name=project_name)
    with _bar(solutions, "import") as bar:
        started = time.perf_counter()
        result = dataset_import(
            project=project, format_name="visualprm400k-raw", path=work / "raw.jsonl", progress=bar.update
        )
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "steps": result.steps_created, "solutions": result.solutions_created}


def phase_export(work: Path, project_name: str, solutions: int) -> dict:
    from annotation.models import Project
    from annotation.selectors import ExportFilters
    from annotation.services.dataset_export import dataset_export

    project = Project.objects.get(name=project_name)
    with _bar(solutions, "export") as bar, (work / "export.jsonl").open("wb") as out:
        counted = _ByteCounter(out)
        started = time.perf_counter()
        written = dataset_export(
            project=project,
            format_name="visualprm400k-raw",
            out=counted,
            filters=ExportFilters(label_source="mc"),
            progress=bar.update,
        )
        seconds = time.perf_counter() - started
    steps = _count_steps(work / "export.jsonl")
    return {"seconds": seconds, "steps": steps, "solutions": written, "bytes": counted.written}


class _ByteCounter(io.RawIOBase):
    """A binary stream that counts bytes on their way to the file."""

    def __init__(self, out):
        self.out = out
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.written += len(data)
        return self.out.write(data)


def _count_steps(path: Path) -> int:
    """Steps in an exported Raw file (each carries its MC total), to check nothing was lost."""
    steps = 0
    with path.open("rb") as handle:
        for line in handle:
            steps += line.count(b'"num_mc_total"')
    return steps


def phase_cleanup(project_name: str) -> dict:
    """Delete the benchmark project with set-based SQL (the ORM's cascade would load millions of rows)."""
    from django.db import connection, transaction

    from annotation.models import AutoLabel, GoldLabel, HumanLabel, Item, ItemImage, Project, Solution, Step

    project = Project.objects.get(name=project_name)
    t = {model.__name__: model._meta.db_table for model in (AutoLabel, GoldLabel, HumanLabel, Item, ItemImage, Solution, Step)}
    solution_ids = f"SELECT so.id FROM {t['Solution']} so JOIN {t['Item']} i ON i.id = so.item_id WHERE i.project_id = %s"
    step_ids = f"SELECT id FROM {t['Step']} WHERE solution_id IN ({solution_ids})"
    with transaction.atomic(), connection.cursor() as cursor:
        for label_table in (t["AutoLabel"], t["GoldLabel"], t["HumanLabel"]):
            cursor.execute(f"DELETE FROM {label_table} WHERE step_id IN ({step_ids})", [project.pk])
        cursor.execute(f"DELETE FROM {t['Step']} WHERE solution_id IN ({solution_ids})", [project.pk])
        cursor.execute(f"DELETE FROM {t['Solution']} WHERE id IN ({solution_ids})", [project.pk])
        cursor.execute(
            f"DELETE FROM {t['ItemImage']} WHERE item_id IN (SELECT id FROM {t['Item']} WHERE project_id = %s)", [project.pk]
        )
        cursor.execute(f"DELETE FROM {t['Item']} WHERE project_id = %s", [project.pk])
        project.delete()
    return {}


PHASES = {"import": phase_import, "export": phase_export}


def run_phase(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", choices=[*PHASES, "cleanup"], required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--solutions", type=int, default=0)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    _django_setup(args.work / "media")
    if args.phase == "cleanup":
        outcome = phase_cleanup(args.project)
    else:
        outcome = PHASES[args.phase](args.work, args.project, args.solutions)
    # ru_maxrss is in KiB on Linux; this process ran only this phase, so it is the phase's peak.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    outcome["peak_rss_mib"] = usage.ru_maxrss / 1024
    outcome["cpu_s"] = usage.ru_utime + usage.ru_stime  # this process only, Django start-up included
    args.result.write_text(json.dumps(outcome))


# ---------------------------------------------------------------- driver


def _subprocess_phase(phase: str, *, work: Path, project: str, solutions: int) -> dict:
    result_file = work / f"{phase}.result.json"
    command = [
        sys.executable, __file__, "--phase", phase, "--work", str(work), "--project", project,
        "--solutions", str(solutions), "--result", str(result_file),
    ]
    subprocess.run(command, check=True, cwd=REPO_ROOT)
    return json.loads(result_file.read_text())


def run_scale(scale: float, *, keep: bool) -> dict:
    from tqdm import tqdm

    solutions = max(SOLUTIONS_PER_QUESTION, round(FULL_SOLUTIONS * scale))
    with tempfile.TemporaryDirectory(prefix=f"stepmark-bench-{scale}-") as temp:
        work = Path(temp)
        image_paths = write_images(work / "images")
        with tqdm(total=solutions, desc=f"generate {scale:g}", unit=" sol", unit_scale=True, leave=False) as bar:
            started = time.perf_counter()
            steps = generate_raw(work / "raw.jsonl", solutions=solutions, image_paths=image_paths, progress=bar.update)
            generate_seconds = time.perf_counter() - started
        project = f"benchmark import/export {scale:g} {int(time.time())}"
        row = {"scale": scale, "solutions": solutions, "steps": steps, "generate_s": generate_seconds,
               "file_mib": (work / "raw.jsonl").stat().st_size / 2**20}
        try:
            row["import"] = _subprocess_phase("import", work=work, project=project, solutions=solutions)
            row["export"] = _subprocess_phase("export", work=work, project=project, solutions=solutions)
        finally:
            if not keep:
                _subprocess_phase("cleanup", work=work, project=project, solutions=0)
        for phase in ("import", "export"):
            if row[phase]["steps"] != steps:
                raise SystemExit(f"{phase} at scale {scale:g}: {row[phase]['steps']} steps, expected {steps}")
    return row


def print_table(rows: list[dict]) -> None:
    phase_header = f"{'s':>7} {'steps/s':>9} {'cpu s':>6} {'RSS MiB':>8}"
    header = f"{'scale':>6} {'solutions':>10} {'steps':>10} | import {phase_header} | export {phase_header}"
    print(header)
    print("-" * len(header))
    for row in rows:
        cells = [f"{row['scale']:>6g} {row['solutions']:>10,} {row['steps']:>10,}"]
        for phase in ("import", "export"):
            result = row[phase]
            cells.append(
                f"       {result['seconds']:>7.1f} {result['steps'] / result['seconds']:>9,.0f} "
                f"{result['cpu_s']:>6.1f} {result['peak_rss_mib']:>8.0f}"
            )
        print(" | ".join(cells))
    print("s: wall seconds of the phase; cpu s: CPU seconds of the phase's Python process (not the database server's)")
    print(f"targets: import >= {TARGET_IMPORT:,} steps/s, export >= {TARGET_EXPORT:,} steps/s, peak RSS < {TARGET_RSS_MIB} MiB")
    if len(rows) > 1:
        base = rows[0]
        for row in rows[1:]:
            ratio = row["steps"] / base["steps"]
            print(
                f"{base['scale']:g} -> {row['scale']:g}: {ratio:.0f}x the steps, "
                f"import {row['import']['seconds'] / base['import']['seconds']:.1f}x the time, "
                f"export {row['export']['seconds'] / base['export']['seconds']:.1f}x the time"
            )


def main() -> None:
    if "--phase" in sys.argv:
        run_phase(sys.argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, nargs="+", default=[0.01, 0.1], help="fractions of 400,000 solutions")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark projects in the database")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("note: DATABASE_URL is not PostgreSQL; the targets are for PostgreSQL", file=sys.stderr)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs", file=sys.stderr)
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.path.insert(0, str(REPO_ROOT))
        from benchmarks.annotation_load import ensure_database

        ensure_database(os.environ["DATABASE_URL"])
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], check=True, cwd=REPO_ROOT)
    rows = [run_scale(scale, keep=args.keep) for scale in args.scale]
    print_table(rows)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
