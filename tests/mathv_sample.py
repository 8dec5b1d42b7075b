"""A few real MATH-V questions with their responses and images, copied into a small folder.

The whole testmini set takes seconds to import; API and command tests need only a handful.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from tests.conftest import shared_data


def mathv_sample(dest: Path, *, questions: int = 3) -> Path:
    source = shared_data("math-v-testmini")
    dest.mkdir(parents=True)
    (dest / "responses").mkdir()
    lines = (source / "testmini.jsonl").read_text(encoding="utf-8").splitlines()[:questions]
    ids = set()
    for line in lines:
        record = json.loads(line)
        ids.add(record["id"])
        (dest / record["image"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / record["image"], dest / record["image"])
    (dest / "testmini.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for responses in sorted((source / "responses").glob("*.jsonl")):
        kept = [line for line in responses.read_text(encoding="utf-8").splitlines() if json.loads(line)["id"] in ids]
        (dest / "responses" / responses.name).write_text("\n".join(kept) + "\n", encoding="utf-8")
    return dest


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zip `folder` with its own name as the top entry, as a person zipping it by hand would."""
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out.write(path, Path(folder.name) / path.relative_to(folder))
    return archive
