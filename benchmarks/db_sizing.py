"""Bytes a row of each table the MC pipeline writes, measured on a real imported project, and what
they come to at VisualPRM400K size (400K solutions, 5.6 steps each, one MC AutoLabel per step).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepmark_sizing .venv/bin/python benchmarks/db_sizing.py

Imports math-v-testmini (from STEPMARK_DEMO_DATA_DIR) (304 questions, 5 real solutions each, split into steps)
into a fresh project, writes one MC AutoLabel per step as the MC runner does (score, counts over
16 rollouts), then reports per table: mean pg_column_size of a row (the tuple's data), and the
table's total on disk (heap + TOAST + indexes) divided by its rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepmark.settings")

SOLUTIONS = 400_000
STEPS_PER_SOLUTION = 5.6


def main() -> None:
    # Migrates and writes a project named "sizing" into the database DATABASE_URL names: say so first.
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    if not os.environ.get("DATABASE_URL"):
        sys.exit("db_sizing.py: set DATABASE_URL to the PostgreSQL database to measure in (it is migrated and written to)")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from annotation.models import AutoLabel, Item, Project, Solution, Step

    call_command("migrate", verbosity=0)
    Project.objects.filter(name="sizing").delete()
    data = Path(settings.STEPMARK_DEMO_DATA_DIR) / "math-v-testmini"
    call_command("import_dataset", str(data), project="sizing", format_name="mathv", create_project=True,
                 verbosity=0)
    project = Project.objects.get(name="sizing")
    rng = random.Random(0)
    labels = []
    for step in Step.objects.filter(solution__item__project=project).only("id"):
        correct = rng.randint(0, 16)
        labels.append(AutoLabel(step=step, kind=AutoLabel.Kind.MC, source="InternVL2.5-8B",
                                score=correct / 16, num_correct=correct, num_total=16))
    AutoLabel.objects.bulk_create(labels, batch_size=5000)

    tables = {"item": Item, "solution": Solution, "step": Step, "autolabel": AutoLabel}
    report = {}
    with connection.cursor() as cursor:
        for name, model in tables.items():
            table = model._meta.db_table
            cursor.execute(f"VACUUM ANALYZE {table}")
            cursor.execute(f"SELECT count(*), avg(pg_column_size(t.*)) FROM {table} t")
            rows, tuple_bytes = cursor.fetchone()
            cursor.execute("SELECT pg_total_relation_size(%s), pg_indexes_size(%s)", [table, table])
            total, indexes = cursor.fetchone()
            report[name] = {"rows": rows, "tuple_bytes": round(float(tuple_bytes), 1),
                            "disk_bytes_per_row": round(total / rows, 1), "index_bytes_per_row": round(indexes / rows, 1)}
    solutions = report["solution"]["rows"]
    steps = report["step"]["rows"]
    report["steps_per_solution_here"] = round(steps / solutions, 2)
    full_steps = SOLUTIONS * STEPS_PER_SOLUTION
    report["at_visualprm400k_size_GiB"] = {
        "step": round(full_steps * report["step"]["disk_bytes_per_row"] / 2**30, 2),
        "autolabel_mc": round(full_steps * report["autolabel"]["disk_bytes_per_row"] / 2**30, 2),
        "solution": round(SOLUTIONS * report["solution"]["disk_bytes_per_row"] / 2**30, 2),
    }
    print(json.dumps(report, indent=2))
    Project.objects.filter(name="sizing").delete()


if __name__ == "__main__":
    main()
