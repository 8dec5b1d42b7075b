"""VisualPRM400K-v1.1-Raw: one solution per JSON line, with Monte Carlo counts for every step.

Record, read and written exactly:
  image             a path, or a list of paths
  question          the full prompt, with <image>
  question_orig     the question alone
  answer            the reference answer
  response          the steps joined by a blank line
  steps_with_score  [{"step", "score", "num_mc_correct", "num_mc_total"}]
  num_mc_sequences
Optional `id` (the item's external id) and `data_source`; any other key is kept and written back.

Stored as: item = (images, question_orig), or `id` when given; item.question = question_orig
with the full prompt in item.metadata["prompt"]; one solution per record keyed by a hash of its
response; each step's counts as an AutoLabel(kind="mc"). The parser runs once per record of a
400K-record file, so the per-record work is kept to plain dict and type checks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import orjson

from annotation.formats.reading import RecordReader, iter_json_records
from annotation.formats.records import ExportRecord, ParsedAutoLabel, ParsedItem, ParsedSolution

MEDIA_TYPE = "application/x-ndjson"
SUFFIX = ".jsonl"
DEFAULT_SOURCE = "VisualPRM400K-v1.1-Raw"

ITEM_FIELDS = ("id", "image", "question", "question_orig", "answer", "data_source")
KNOWN_FIELDS = frozenset((*ITEM_FIELDS, "response", "steps_with_score", "num_mc_sequences"))
STEP_FIELDS = ("step", "score", "num_mc_correct", "num_mc_total")


# --- helpers shared with the conversation format (annotation.formats.visualprm400k) ---


def stable_hash(text: str) -> str:
    """16 hex digits, the same in every process (unlike hash())."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def item_external_id(paths: list[str], image_form: str | None, question: str) -> str:
    """One item per (images, question): solutions of the same question share it across files and formats."""
    return stable_hash("\x1e".join(paths) + "\x1f" + (image_form or "") + "\x1f" + question)


def read_image_field(reader: RecordReader, *, required: bool) -> tuple[list[str], str | None]:
    """(paths, form): form is None when export's default rule (one path -> str, several -> list) gives it back."""
    value = reader.record.get("image")
    if value is None:
        if required:
            raise reader.error("missing required field", "image")
        return [], None
    if type(value) is str:
        return ([value], None) if value else ([], "str")
    if type(value) is list:
        for position, path in enumerate(value):
            if type(path) is not str or not path:
                raise reader.error(f"expected a non-empty path string, got {path!r}", f"image[{position}]")
        return value, (None if len(value) > 1 else "list")
    raise reader.error(f"expected a path or a list of paths, got {type(value).__name__}", "image")


def image_value(paths: list[str], image_form: str | None) -> str | list[str] | None:
    """The `image` value to write; None when there is no image to name."""
    if image_form == "list":
        return list(paths)
    if image_form == "str":
        return paths[0] if paths else ""
    if len(paths) == 1:
        return paths[0]
    return list(paths) if paths else None


# --- import ---


def parse(source) -> Iterator[ParsedSolution]:
    parser = _RawParser(
        file=source.name,
        label_source=str(source.options.get("source") or DEFAULT_SOURCE),
        data_source=str(source.options.get("data_source") or source.path.stem),
    )
    for line, record in iter_json_records(source.path):
        yield parser.solution(RecordReader(record, file=parser.file, line=line))


class _RawParser:
    def __init__(self, *, file: str, label_source: str, data_source: str):
        self.file = file
        self.label_source = label_source
        self.data_source = data_source
        # external id -> hash of the item-level fields of its first record in this file: a later record
        # whose fields differ keeps its own copy, so export gives every record back as it was.
        self.item_signatures: dict[str, int] = {}
        # "external id\0key": identical responses to one question are legitimate samples, so they get -2, -3, ...
        self.solution_keys: set[str] = set()

    def solution(self, reader: RecordReader) -> ParsedSolution:
        record = reader.record
        paths, image_form = read_image_field(reader, required=True)
        prompt = record.get("question")
        question = record.get("question_orig")
        answer = record.get("answer")
        response = record.get("response")
        entries = record.get("steps_with_score")
        num_mc_sequences = record.get("num_mc_sequences")
        if not (
            type(prompt) is str
            and type(question) is str
            and type(answer) is str
            and type(response) is str
            and type(entries) is list
            and type(num_mc_sequences) is int
            and num_mc_sequences >= 0
        ):
            _check_record_fields(reader)  # raises naming the field, unless the answer is just a number
        steps, auto, solution_metadata = self._steps(reader, entries)
        solution_metadata["num_mc_sequences"] = num_mc_sequences

        record_id = record.get("id")
        if record_id is not None:
            if type(record_id) not in (str, int) or record_id == "":
                raise reader.error(f"expected a non-empty string or an integer, got {record_id!r}", "id")
            external_id = str(record_id)
        else:
            external_id = item_external_id(paths, image_form, question)
        data_source = record.get("data_source")
        if data_source is not None and type(data_source) is not str:
            raise reader.error(f"expected str, got {type(data_source).__name__}", "data_source")

        signature = hash((tuple(paths), image_form, prompt, question, answer, data_source, record_id))
        first_signature = self.item_signatures.setdefault(external_id, signature)
        if first_signature != signature:
            solution_metadata["item"] = {field: record[field] for field in ITEM_FIELDS if field in record}

        item_metadata: dict = {"prompt": prompt}
        if image_form is not None:
            item_metadata["image_form"] = image_form
        if type(answer) is not str:
            item_metadata["answer_value"] = answer
        if record_id is not None:
            item_metadata["id_type"] = "int" if type(record_id) is int else "str"
        if data_source is not None:
            item_metadata["data_source_in_record"] = True
        if len(record) > 7 and (record.keys() - KNOWN_FIELDS):
            solution_metadata["extra"] = {key: value for key, value in record.items() if key not in KNOWN_FIELDS}

        key = stable_hash(response)
        seen_key = f"{external_id}\0{key}"
        if seen_key in self.solution_keys:
            copy = 2
            while f"{seen_key}-{copy}" in self.solution_keys:
                copy += 1
            key, seen_key = f"{key}-{copy}", f"{seen_key}-{copy}"
        self.solution_keys.add(seen_key)

        return ParsedSolution(
            item=ParsedItem(
                external_id=external_id,
                question=question,
                answer=answer if type(answer) is str else json.dumps(answer),
                data_source=data_source if data_source is not None else self.data_source,
                metadata=item_metadata,
                image_paths=paths,
            ),
            key=key,
            steps=steps,
            response=response,
            metadata=solution_metadata,
            auto=auto,
            line=reader.line,
        )

    def _steps(self, reader: RecordReader, entries: list) -> tuple[list[str], list[ParsedAutoLabel], dict]:
        if not entries:
            raise reader.error("no steps", "steps_with_score")
        steps: list[str] = []
        auto: list[ParsedAutoLabel] = []
        metadata: dict = {}
        source = self.label_source
        for index, entry in enumerate(entries):
            # Fast path: one combined check for the usual well-formed step; anything else is
            # diagnosed (or its oddities remembered) by _unusual_step.
            if type(entry) is dict and len(entry) == 4:
                text = entry.get("step")
                score = entry.get("score")
                right = entry.get("num_mc_correct")
                total = entry.get("num_mc_total")
                if (
                    type(text) is str
                    and type(score) is float
                    and 0.0 <= score <= 1.0
                    and type(right) is int
                    and type(total) is int
                    and 0 <= right <= total
                    and total > 0
                ):
                    steps.append(text)
                    auto.append(ParsedAutoLabel(kind="mc", source=source, score=score, num_correct=right, num_total=total))
                    continue
            text, score, right, total = _unusual_step(reader, index, entry, metadata)
            steps.append(text)
            auto.append(ParsedAutoLabel(kind="mc", source=source, score=score, num_correct=right, num_total=total))
        return steps, auto, metadata


def _check_record_fields(reader: RecordReader) -> None:
    for name in ("question", "question_orig", "response"):
        reader.get(name, str)
    reader.get("answer", (str, int, float))
    reader.get("steps_with_score", list)
    if reader.get("num_mc_sequences", int) < 0:
        raise reader.error(f"expected a non-negative integer, got {reader.record['num_mc_sequences']}", "num_mc_sequences")


def _unusual_step(reader: RecordReader, index: int, entry, metadata: dict) -> tuple[str, float, int, int]:
    """Check a step the fast path did not accept: raise naming the field, or remember what export must give back."""
    where = f"steps_with_score[{index}]"
    if type(entry) is not dict:
        raise reader.error(f"expected an object, got {type(entry).__name__}", where)
    for name in STEP_FIELDS:
        if entry.get(name) is None:
            raise reader.error("missing required field", f"{where}.{name}")
    text, score = entry["step"], entry["score"]
    right, total = entry["num_mc_correct"], entry["num_mc_total"]
    if type(text) is not str:
        raise reader.error(f"expected str, got {type(text).__name__}", f"{where}.step")
    score_type = type(score)
    if score_type is not float and score_type is not int:
        raise reader.error(f"expected a number, got {score_type.__name__}", f"{where}.score")
    if not 0 <= score <= 1:  # also rejects NaN
        raise reader.error(f"score {score!r} is outside [0, 1]", f"{where}.score")
    if type(right) is not int or right < 0:
        raise reader.error(f"expected a non-negative integer, got {right!r}", f"{where}.num_mc_correct")
    if type(total) is not int or total <= 0:
        raise reader.error(f"expected a positive integer, got {total!r}", f"{where}.num_mc_total")
    if right > total:
        raise reader.error(f"{right} correct completions out of {total}: more than were sampled", f"{where}.num_mc_correct")
    if score_type is int:
        # Stored as a float; remember which were written as integers so they come back as such.
        metadata.setdefault("int_scores", []).append(index)
    if len(entry) > 4:
        metadata.setdefault("step_extra", {})[str(index)] = {k: v for k, v in entry.items() if k not in STEP_FIELDS}
    return text, float(score), right, total


# --- export ---


def write(records: Iterable[ExportRecord], out: BinaryIO, *, options: dict) -> int:
    """Write solutions with MC counts on every step as Raw records; others are skipped. Returns the count."""
    written = 0
    # orjson writes UTF-8 with the shortest round-trip floats, several times faster than json.dumps.
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    for record in records:
        raw = raw_record(record)
        if raw is not None:
            try:
                out.write(dumps(raw, option=newline))
            except TypeError:  # orjson refuses integers past 64 bits; json takes anything JSON can hold
                out.write((json.dumps(raw, ensure_ascii=False) + "\n").encode("utf-8"))
            written += 1
    return written


def raw_record(record: ExportRecord) -> dict | None:
    """The Raw JSON object for `record`, or None when a step lacks its MC counts."""
    steps = record.steps
    if not steps or any(step.mc_score is None or step.num_total is None for step in steps):
        return None
    metadata = record.solution_metadata or {}
    fields = metadata.get("item") or _item_fields(record)
    int_scores = set(metadata.get("int_scores", ()))
    step_extra = metadata.get("step_extra", {})
    scored = []
    for step in steps:
        entry = {
            "step": step.text,
            "score": int(step.mc_score) if step.index in int_scores else step.mc_score,
            "num_mc_correct": step.num_correct,
            "num_mc_total": step.num_total,
        }
        extra = step_extra.get(str(step.index))
        if extra:
            entry.update(extra)
        scored.append(entry)
    raw: dict = {}
    if "id" in fields:
        raw["id"] = fields["id"]
    raw["image"] = fields.get("image")
    raw["question"] = fields.get("question")
    raw["question_orig"] = fields.get("question_orig")
    raw["answer"] = fields.get("answer")
    raw["response"] = record.response or "\n\n".join(step.text for step in steps)
    raw["steps_with_score"] = scored
    num_mc_sequences = metadata.get("num_mc_sequences")
    raw["num_mc_sequences"] = num_mc_sequences if num_mc_sequences is not None else sum(s.num_total for s in steps)
    if "data_source" in fields:
        raw["data_source"] = fields["data_source"]
    raw.update(metadata.get("extra", {}))
    return raw


def _item_fields(record: ExportRecord) -> dict:
    """The item-level fields of a record, from the item (and what its import remembered)."""
    item_metadata = record.item_metadata or {}
    image = image_value(record.image_paths, item_metadata.get("image_form"))
    prompt = item_metadata.get("prompt")
    if prompt is None:
        # Not imported from Raw: build the prompt the InternVL way, one <image> line per image.
        prompt = "<image>\n" * len(record.image_paths) + record.question
    fields: dict = {
        "image": image if image is not None else [],
        "question": prompt,
        "question_orig": record.question,
        "answer": item_metadata.get("answer_value", record.answer),
    }
    id_type = item_metadata.get("id_type")
    if id_type is not None:
        fields["id"] = int(record.item_external_id) if id_type == "int" else record.item_external_id
    if item_metadata.get("data_source_in_record"):
        fields["data_source"] = record.data_source
    return fields
