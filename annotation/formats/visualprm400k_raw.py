"""VisualPRM400K-v1.1-Raw: one solution per JSON line, with Monte Carlo counts for every step.

Record, read and written exactly (as the released pipeline, InternVL's
`tools/reasoning_data_pipeline/visualprm_data_pieline.py`, writes it):
  image             a path, or a list of paths
  question          the full prompt the policy saw, with one <image> per image
  question_orig     the question alone
  answer            the reference answer
  response          the steps joined by a blank line
  steps_with_score  [{"step", "score", "num_mc_correct", "num_mc_total"}]
  num_mc_sequences  the rollouts sampled per step (16)
Optional `id` and `data_source`; any other key is kept and written back.

The pipeline stops early by default: after the first step whose rollouts are all wrong, the rest
carry `score: 0.0, num_mc_correct: 0, num_mc_total: 0`. Those steps were not sampled: they get no
MC label (no estimate), and export writes them back the same way.

Stored as: item = (images, prompt), the same item the conversation format
(annotation.formats.visualprm400k) makes for that question, whose records carry only the prompt;
item.question = question_orig without its <image> placeholders, the prompt in
item.metadata["prompt"]; one solution per record keyed by a hash of its response (the
conversation format keys the same solution alike); each sampled step's counts as an
AutoLabel(kind="mc"). The parser runs once per record of a 400K-record file, so the per-record
work is kept to plain dict and type checks.
"""

from __future__ import annotations

import hashlib
import json
import re
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


IMAGE_PLACEHOLDER = "<image>"  # the pipeline's IMG_PLACEHOLDER, and what InternVL's loader counts
_PLACEHOLDER_LINE = re.compile(r"(?m)^[ \t]*<image>[ \t]*(?:\n|$)")
_PLACEHOLDER = re.compile(r"[ \t]*<image>")


def item_external_id(paths: list[str], image_form: str | None, prompt: str) -> str:
    """One item per (images, prompt): the Raw and conversation records of one question share it."""
    return stable_hash("\x1e".join(paths) + "\x1f" + (image_form or "") + "\x1f" + prompt)


def without_image_placeholders(text: str) -> str:
    """`text` for people and for processors that place images themselves: no literal <image>."""
    if IMAGE_PLACEHOLDER not in text:
        return text
    return _PLACEHOLDER.sub("", _PLACEHOLDER_LINE.sub("", text)).strip()


def policy_prompt(record: ExportRecord) -> str:
    """The prompt with exactly one <image> per image of the record, as InternVL's loader requires.

    An imported prompt that already satisfies it is written as it came; otherwise the
    placeholders go at its head, one line each, as the pipeline puts them.
    """
    prompt = (record.item_metadata or {}).get("prompt")
    if prompt is None:
        prompt = record.question
    count = len(record.image_paths)
    if prompt.count(IMAGE_PLACEHOLDER) == count:
        return prompt
    return (IMAGE_PLACEHOLDER + "\n") * count + without_image_placeholders(prompt)


class SolutionKeys:
    """Solution keys from a hash of the response; repeats within one question get -2, -3, ...

    The policy may sample the same response twice (four responses per question): a second
    solution, not a duplicate record.
    """

    def __init__(self):
        self.seen: set[str] = set()

    def key(self, external_id: str, response: str) -> str:
        key = stable_hash(response)
        seen_key = f"{external_id}\0{key}"
        if seen_key in self.seen:
            copy = 2
            while f"{seen_key}-{copy}" in self.seen:
                copy += 1
            key, seen_key = f"{key}-{copy}", f"{seen_key}-{copy}"
        self.seen.add(seen_key)
        return key


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
        self.solution_keys = SolutionKeys()

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
        if record_id is not None and (type(record_id) not in (str, int) or record_id == ""):
            raise reader.error(f"expected a non-empty string or an integer, got {record_id!r}", "id")
        # Not the record's `id`: the conversation records of the same question carry only the prompt.
        external_id = item_external_id(paths, image_form, prompt)
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
            item_metadata["id"] = record_id
        shown = without_image_placeholders(question)
        if shown != question:
            item_metadata["question_orig"] = question
        if data_source is not None:
            item_metadata["data_source_in_record"] = True
        if len(record) > 7 and (record.keys() - KNOWN_FIELDS):
            solution_metadata["extra"] = {key: value for key, value in record.items() if key not in KNOWN_FIELDS}

        key = self.solution_keys.key(external_id, response)

        return ParsedSolution(
            item=ParsedItem(
                external_id=external_id,
                question=shown,
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

    def _steps(self, reader: RecordReader, entries: list) -> tuple[list[str], list[ParsedAutoLabel | None], dict]:
        if not entries:
            raise reader.error("no steps", "steps_with_score")
        steps: list[str] = []
        auto: list[ParsedAutoLabel | None] = []
        metadata: dict = {}
        source = self.label_source
        stopped = False  # an earlier step had no right rollout: the early stop may leave the rest unsampled
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
                    stopped = stopped or right == 0
                    continue
            text, score, right, total = _unusual_step(reader, index, entry, metadata, stopped=stopped)
            steps.append(text)
            if total == 0:
                auto.append(None)  # not sampled: no estimate, rather than a 0 that was never measured
            else:
                auto.append(ParsedAutoLabel(kind="mc", source=source, score=score, num_correct=right, num_total=total))
            stopped = stopped or right == 0
        return steps, auto, metadata


def _check_record_fields(reader: RecordReader) -> None:
    for name in ("question", "question_orig", "response"):
        reader.get(name, str)
    reader.get("answer", (str, int, float))
    reader.get("steps_with_score", list)
    if reader.get("num_mc_sequences", int) < 0:
        raise reader.error(f"expected a non-negative integer, got {reader.record['num_mc_sequences']}", "num_mc_sequences")


def _unusual_step(reader: RecordReader, index: int, entry, metadata: dict, *, stopped: bool) -> tuple[str, float, int, int]:
    """Check a step the fast path did not accept: raise naming the field, or remember what export must give back.

    `num_mc_total: 0` is a step the early stop did not sample; it is valid only after a step
    with no right rollout, and only with no right rollouts and score 0.
    """
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
    if type(total) is not int or total < 0:
        raise reader.error(f"expected a non-negative integer, got {total!r}", f"{where}.num_mc_total")
    if total == 0:
        if not stopped:
            raise reader.error(
                "num_mc_total is 0 (not sampled), but no earlier step scored 0: the pipeline's early stop "
                "leaves unsampled only the steps after the first step with no right rollout",
                f"{where}.num_mc_total",
            )
        if right != 0 or score != 0:
            raise reader.error(
                f"a step not sampled (num_mc_total 0) must have num_mc_correct 0 and score 0, got {right} and {score!r}",
                f"{where}.num_mc_correct" if right != 0 else f"{where}.score",
            )
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
    """The Raw JSON object for `record`, or None when a step lacks its MC counts.

    A step without counts after a step with no right rollout is the early stop's "not sampled"
    step, written as the pipeline writes it (score 0.0, 0 of 0).
    """
    steps = record.steps
    if not steps:
        return None
    metadata = record.solution_metadata or {}
    int_scores = set(metadata.get("int_scores", ()))
    step_extra = metadata.get("step_extra", {})
    scored = []
    stopped = False
    rollouts_per_step = 0
    for step in steps:
        if step.mc_score is None or step.num_total is None:
            if not stopped:
                return None
            score, right, total = 0.0, 0, 0
        else:
            score, right, total = step.mc_score, step.num_correct, step.num_total
            stopped = stopped or right == 0
            rollouts_per_step = max(rollouts_per_step, total)
        entry = {
            "step": step.text,
            "score": int(score) if step.index in int_scores else score,
            "num_mc_correct": right,
            "num_mc_total": total,
        }
        if record.carries_error_categories:
            entry["error_categories"] = list(step.error_categories)
        extra = step_extra.get(str(step.index))
        if extra:
            entry.update(extra)
        scored.append(entry)
    fields = metadata.get("item") or _item_fields(record)
    raw: dict = {}
    if "id" in fields:
        raw["id"] = fields["id"]
    raw["image"] = fields.get("image")
    raw["question"] = fields.get("question")
    raw["question_orig"] = fields.get("question_orig")
    raw["answer"] = fields.get("answer")
    raw["response"] = record.response or "\n\n".join(step.text for step in steps)
    raw["steps_with_score"] = scored
    # The rollouts sampled per step (16 in VisualPRM400K), not their sum over the steps.
    num_mc_sequences = metadata.get("num_mc_sequences")
    raw["num_mc_sequences"] = num_mc_sequences if num_mc_sequences is not None else rollouts_per_step
    if "data_source" in fields:
        raw["data_source"] = fields["data_source"]
    raw.update(metadata.get("extra", {}))
    return raw


def _item_fields(record: ExportRecord) -> dict:
    """The item-level fields of a record, from the item (and what its import remembered)."""
    item_metadata = record.item_metadata or {}
    image = image_value(record.image_paths, item_metadata.get("image_form"))
    fields: dict = {
        "image": image if image is not None else [],
        # An imported prompt is written as it came (exact round trip); else one <image> line per image.
        "question": item_metadata.get("prompt") or policy_prompt(record),
        "question_orig": item_metadata.get("question_orig", record.question),
        "answer": item_metadata.get("answer_value", record.answer),
    }
    if "id" in item_metadata:
        fields["id"] = item_metadata["id"]
    if item_metadata.get("data_source_in_record"):
        fields["data_source"] = record.data_source
    return fields
