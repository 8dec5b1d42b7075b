"""PRM800K (openai/prm800k): one labelled solution per record, step ratings -1 / 0 / +1.

A record holds `question` (problem, ground_truth_answer, and in phase 2 the pre-generated
solution) and `label.steps`: for every step the candidate `completions` (text, rating,
flagged), an optional `human_completion` and `chosen_completion`, the index of the one the
trajectory continues with. The solution imported is that trajectory:

- `chosen_completion` set: that completion;
- else the `human_completion` (phase 1: every candidate was rated -1 and the labeler wrote a step);
- else, only on the last step, the first rated completion: in phase 2 the labeler stops at the
  first -1, which is `completions[0]` (the pre-generated step), so the solution ends on its error.
  A last step with no rated completion (the labeler gave up before rating) is left out.

Ratings become imported gold labels (origin "PRM800K"); a null rating leaves the step
unlabelled. Several records label the same problem, so an item is keyed by a hash of the
problem text and a solution by a hash of (labeler, timestamp, step texts).

The released files are JSON lines; the sample files concatenate pretty-printed records, so
the reader accepts any sequence of JSON objects and reports the line each record starts on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from annotation.formats.reading import RecordReader
from annotation.formats.records import DatasetImportError, ParsedItem, ParsedSolution
from annotation.steps import join_steps

DEFAULT_ORIGIN = "PRM800K"
RATINGS = (-1, 0, 1)
ANSWER_MARKER = "# Answer"
SOLUTION_METADATA_FIELDS = (
    "labeler",
    "timestamp",
    "generation",
    "is_quality_control_question",
    "is_initial_screening_question",
)
# JSON strings cannot hold a raw newline, so brackets outside strings can be counted a line at a time.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


def stable_hash(value: Any) -> str:
    """First 16 hex digits of the SHA-256 of `value` as canonical JSON: the same input gives the same key."""
    canonical = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def iter_json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (first line, object) for each top-level JSON object: JSON lines or concatenated pretty-printed records."""
    name = path.name
    decoder = json.JSONDecoder()
    buffer: list[str] = []
    start_line = 0
    depth = 0
    with path.open("rb") as handle:
        for line_number, line in _numbered_lines(handle, name):
            if depth == 0:
                stripped = line.strip()
                if not stripped:
                    continue
                if not stripped.startswith("{"):
                    raise DatasetImportError("expected a JSON object", file=name, line=line_number)
                # Fast path: one record a line, as in the released files.
                whole_line = _loads_or_none(stripped)
                if whole_line is not None:
                    yield line_number, whole_line
                    continue
                start_line = line_number  # the first line of a pretty-printed record, or a malformed one
            buffer.append(line)
            code = _JSON_STRING.sub("", line) if '"' in line else line
            depth += code.count("{") + code.count("[") - code.count("}") - code.count("]")
            if depth < 0:
                raise DatasetImportError("unbalanced closing bracket", file=name, line=line_number)
            if depth == 0:
                yield from _decode_objects("".join(buffer), decoder, file=name, first_line=start_line)
                buffer = []
    if buffer:
        raise DatasetImportError(
            "record is not closed before the end of the file", file=name, line=start_line
        )


def _numbered_lines(handle, name: str) -> Iterator[tuple[int, str]]:
    # Decoded a line at a time so a bad byte is reported on its own line, not a buffer later.
    for line_number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetImportError(
                f"not UTF-8 text (byte {exc.start + 1} of the line)", file=name, line=line_number
            ) from None
        yield line_number, line


def _loads_or_none(text: str) -> dict | None:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _decode_objects(
    text: str, decoder: json.JSONDecoder, *, file: str, first_line: int
) -> Iterator[tuple[int, dict]]:
    # Usually one object; several when a line closes one record and opens the next.
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        line = first_line + text.count("\n", 0, position)
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise DatasetImportError(
                f"malformed JSON: {exc.msg}", file=file, line=first_line + exc.lineno - 1
            ) from None
        if not isinstance(value, dict):
            raise DatasetImportError(
                f"expected a JSON object, got {type(value).__name__}", file=file, line=line
            )
        yield line, value


class _NestedReader(RecordReader):
    """A RecordReader on a nested object whose errors name the full path ("label.steps[2].chosen_completion")."""

    def __init__(self, record: dict[str, Any], *, file: str, line: int, prefix: str):
        super().__init__(record, file=file, line=line)
        self.prefix = prefix

    def error(self, message: str, field: str | None = None) -> DatasetImportError:
        path = f"{self.prefix}.{field}" if field else self.prefix
        return super().error(message, path)

    def rating(self, field: str = "rating") -> int | None:
        value = self.record.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value not in RATINGS:
            raise self.error(f"rating {value!r} is not one of {list(RATINGS)} or null", field)
        return value


def _nested(parent: RecordReader, value: Any, path: str) -> _NestedReader:
    if not isinstance(value, dict):
        raise parent.error(f"expected an object, got {type(value).__name__}", path)
    return _NestedReader(value, file=parent.file, line=parent.line, prefix=path)


class TakenStep(NamedTuple):
    """The completion a labelled trajectory continues with at one step."""

    text: str
    rating: int | None
    flagged: bool
    human_written: bool


def _taken(completion: _NestedReader, *, human_written: bool = False) -> TakenStep:
    return TakenStep(
        completion.get("text", str),
        completion.rating(),
        completion.record.get("flagged") is True,
        human_written,
    )


def _chosen_step(reader: RecordReader, step: Any, index: int, *, is_last: bool) -> TakenStep | None:
    """The step the trajectory takes at `index`, or None to leave an unrated last step out."""
    path = f"label.steps[{index}]"
    step_reader = _nested(reader, step, path)
    completions = step_reader.get("completions", list)
    candidates = [_nested(step_reader, c, f"{path}.completions[{i}]") for i, c in enumerate(completions)]
    for candidate in candidates:
        candidate.get("text", str)
        candidate.rating()
    chosen = step_reader.get("chosen_completion", int, required=False)
    if chosen is not None:
        if not 0 <= chosen < len(candidates):
            raise step_reader.error(
                f"index {chosen} out of range: the step has {len(candidates)} completions",
                "chosen_completion",
            )
        return _taken(candidates[chosen])
    human = step_reader.record.get("human_completion")
    if human is not None:
        return _taken(_nested(step_reader, human, f"{path}.human_completion"), human_written=True)
    if not is_last:
        raise step_reader.error(
            "chosen_completion is null and there is no human_completion (only the last step may stop unchosen)",
            "chosen_completion",
        )
    rated = [candidate for candidate in candidates if candidate.rating() is not None]
    return _taken(rated[0]) if rated else None


def _final_answer(step_text: str) -> str:
    _, marker, tail = step_text.rpartition(ANSWER_MARKER)
    return tail.strip() if marker else ""


def parse(source) -> Iterator[ParsedSolution]:
    path: Path = source.path
    if not path.is_file():
        raise DatasetImportError("the prm800k format takes one .jsonl or .json file", file=path.name)
    origin = str(source.options.get("gold_origin", DEFAULT_ORIGIN))
    data_source = str(source.options.get("data_source", DEFAULT_ORIGIN))
    policy_model = str(source.options.get("policy_model", ""))
    for line, record in iter_json_objects(path):
        reader = RecordReader(record, file=path.name, line=line)
        parsed = _parse_record(reader, data_source=data_source, origin=origin, policy_model=policy_model)
        if parsed is not None:
            yield parsed


def _parse_record(
    reader: RecordReader, *, data_source: str, origin: str, policy_model: str
) -> ParsedSolution | None:
    question = _nested(reader, reader.get("question", dict), "question")
    label = _nested(reader, reader.get("label", dict), "label")
    problem = question.text("problem")
    ground_truth = question.text("ground_truth_answer", required=False)
    raw_steps = label.get("steps", list)
    chosen = [
        _chosen_step(reader, step, index, is_last=index == len(raw_steps) - 1)
        for index, step in enumerate(raw_steps)
    ]
    taken = [step for step in chosen if step is not None]
    if not taken:
        return None  # nothing was labelled (e.g. "bad_problem" at the first step): no solution to import
    texts = [step.text for step in taken]
    ratings = [step.rating for step in taken]
    finish_reason = label.text("finish_reason", required=False)
    final_answer = _final_answer(texts[-1])
    # The labels say whether the answer is right: "solution" means it reached the correct answer,
    # a -1 on the step that states the answer means it is wrong; anything else is unknown.
    is_correct: bool | None = None
    if finish_reason == "solution":
        is_correct = True
    elif final_answer and ratings[-1] == -1:
        is_correct = False
    metadata: dict[str, Any] = {field: reader.record.get(field) for field in SOLUTION_METADATA_FIELDS}
    metadata |= {
        "finish_reason": finish_reason,
        "total_time_ms": label.record.get("total_time"),
        "flagged_steps": [index for index, step in enumerate(taken) if step.flagged],
        "human_written_steps": [index for index, step in enumerate(taken) if step.human_written],
        "unrated_last_step_left_out": len(taken) < len(raw_steps),
    }
    for field in ("pre_generated_answer", "pre_generated_verifier_score"):
        if question.record.get(field) is not None:
            metadata[field] = question.record[field]
    if question.record.get("pre_generated_steps") is not None:
        metadata["pre_generated_step_count"] = len(question.string_list("pre_generated_steps"))
    item_metadata = {}
    if question.record.get("ground_truth_solution") is not None:
        item_metadata["ground_truth_solution"] = question.text("ground_truth_solution")
    item = ParsedItem(
        external_id=f"prm800k-{stable_hash(problem)}",
        question=problem,
        answer=ground_truth,
        data_source=data_source,
        metadata=item_metadata,
    )
    key = stable_hash([reader.record.get("labeler"), reader.record.get("timestamp"), texts])
    return ParsedSolution(
        item=item,
        key=key,
        steps=texts,
        response=join_steps(texts),
        policy_model=policy_model,
        final_answer=final_answer,
        is_correct=is_correct,
        metadata=metadata,
        gold=ratings,
        gold_origin=origin,
        line=reader.line,
    )
