"""VisualPRM400K (v1, v1.1) training conversations: one solution per JSON line, "+" or "-" per step.

  {"id", "image", "conversations": [
     {"from": "system", "value": <PRM system prompt>},
     {"from": "human", "value": "### Question:\n{q}\n\n### Solution Process:\n{step_0}"},
     {"from": "gpt", "value": "+"}, {"from": "human", "value": step_1}, {"from": "gpt", "value": "-"}, ...]}

The first human turn may start with "<image>\n". Items are (images, question), so the solutions
of one question share an item (the same item the Raw format makes for that question); the
solution key is `id`; labels are stored as AutoLabel(kind="imported", value=+1/-1). What the
format says beyond that (a different system prompt, the <image> prefix, an integer id, extra
keys) is kept in the solution's metadata so export gives the record back as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from annotation.formats.reading import RecordReader, iter_json_records
from annotation.formats.records import ExportRecord, ParsedAutoLabel, ParsedItem, ParsedSolution
from annotation.formats.visualprm400k_raw import image_value, item_external_id, read_image_field
from annotation.steps import join_steps
from prm.core.prompts import (
    FIRST_TURN_PREFIX,
    FIRST_TURN_SEPARATOR,
    NEGATIVE_TOKEN,
    POSITIVE_TOKEN,
    PRM_SYSTEM_PROMPT,
    first_turn,
)

MEDIA_TYPE = "application/x-ndjson"
SUFFIX = ".jsonl"
DEFAULT_SOURCE = "VisualPRM400K"
IMAGE_TOKEN_PREFIX = "<image>\n"
KNOWN_FIELDS = frozenset(("id", "image", "conversations"))
_LABEL_VALUES = {POSITIVE_TOKEN: 1, NEGATIVE_TOKEN: -1}


# --- import ---


def parse(source) -> Iterator[ParsedSolution]:
    label_source = str(source.options.get("source") or DEFAULT_SOURCE)
    data_source = str(source.options.get("data_source") or source.path.stem)
    for line, record in iter_json_records(source.path):
        reader = RecordReader(record, file=source.name, line=line)
        yield _solution(reader, label_source=label_source, data_source=data_source)


def _solution(reader: RecordReader, *, label_source: str, data_source: str) -> ParsedSolution:
    record = reader.record
    record_id = reader.get("id", (str, int))
    if record_id == "":
        raise reader.error("id is empty", "id")
    paths, image_form = read_image_field(reader, required=False)
    turns = reader.get("conversations", list)
    metadata: dict = {}
    start = 0
    if turns and type(turns[0]) is dict and turns[0].get("from") == "system":
        system_prompt = turns[0].get("value")
        if type(system_prompt) is not str:
            raise reader.error("expected a string", "conversations[0].value")
        if system_prompt != PRM_SYSTEM_PROMPT:
            metadata["system_prompt"] = system_prompt
        start = 1
    else:
        metadata["system_prompt"] = None  # the record had no system turn; export writes none
    question: str | None = None
    steps: list[str] = []
    labels: list[ParsedAutoLabel] = []
    for index in range(start, len(turns)):
        turn = turns[index]
        if type(turn) is not dict:
            raise reader.error(f"expected an object with 'from' and 'value', got {type(turn).__name__}", f"conversations[{index}]")
        expected = "human" if (index - start) % 2 == 0 else "gpt"
        role = turn.get("from")
        if role != expected:
            raise reader.error(
                f"expected a {expected!r} turn here, got {role!r} (turns go system, human, gpt, human, gpt, ...)",
                f"conversations[{index}].from",
            )
        value = turn.get("value")
        if type(value) is not str:
            raise reader.error(f"expected a string, got {type(value).__name__}", f"conversations[{index}].value")
        if expected == "gpt":
            label = _LABEL_VALUES.get(value)
            if label is None:
                raise reader.error(
                    f"label {value!r} is not {POSITIVE_TOKEN!r} or {NEGATIVE_TOKEN!r}", f"conversations[{index}].value"
                )
            labels.append(ParsedAutoLabel(kind="imported", source=label_source, value=label))
        elif question is None:
            question, first_step, has_image_token = _first_turn(reader, value, index)
            if has_image_token:
                metadata["image_token"] = True
            steps.append(first_step)
        else:
            steps.append(value)
    if not steps:
        raise reader.error("no human turn: the solution has no steps", "conversations")
    if len(labels) < len(steps):
        raise reader.error("the last step has no gpt turn with its label", f"conversations[{len(turns)}]")
    if type(record_id) is int:
        metadata["id_type"] = "int"
    if len(record) > 3 and (record.keys() - KNOWN_FIELDS):
        metadata["extra"] = {key: value for key, value in record.items() if key not in KNOWN_FIELDS}
    return ParsedSolution(
        item=ParsedItem(
            external_id=item_external_id(paths, image_form, question),
            question=question,
            data_source=data_source,
            metadata={"image_form": image_form} if image_form is not None else {},
            image_paths=paths,
        ),
        key=str(record_id),
        steps=steps,
        response=join_steps(steps),
        metadata=metadata,
        auto=labels,
        line=reader.line,
    )


def _first_turn(reader: RecordReader, value: str, index: int) -> tuple[str, str, bool]:
    """(question, first step, whether it began with "<image>\\n")."""
    has_image_token = value.startswith(IMAGE_TOKEN_PREFIX)
    body = value[len(IMAGE_TOKEN_PREFIX) :] if has_image_token else value
    if not body.startswith(FIRST_TURN_PREFIX) or FIRST_TURN_SEPARATOR not in body:
        raise reader.error(
            'the first human turn must read "### Question:\\n<question>\\n\\n### Solution Process:\\n<first step>"',
            f"conversations[{index}].value",
        )
    question, _, first_step = body[len(FIRST_TURN_PREFIX) :].partition(FIRST_TURN_SEPARATOR)
    return question, first_step, has_image_token


# --- export ---


def write(records: Iterable[ExportRecord], out: BinaryIO, *, options: dict) -> int:
    """Write solutions whose every step has a label; neutral (0) becomes `neutral_as` ("+" by default)."""
    neutral = options.get("neutral_as", POSITIVE_TOKEN)
    if neutral not in _LABEL_VALUES:
        raise ValueError(f"neutral_as must be {POSITIVE_TOKEN!r} or {NEGATIVE_TOKEN!r}, not {neutral!r}")
    tokens = {1: POSITIVE_TOKEN, -1: NEGATIVE_TOKEN, 0: neutral}
    written = 0
    for record in records:
        conversation = conversation_record(record, tokens=tokens)
        if conversation is not None:
            out.write((json.dumps(conversation, ensure_ascii=False) + "\n").encode("utf-8"))
            written += 1
    return written


def conversation_record(record: ExportRecord, *, tokens: dict[int, str]) -> dict | None:
    """The conversation object for `record`, or None when a step has no label."""
    if not record.steps or any(step.label is None for step in record.steps):
        return None
    metadata = record.solution_metadata or {}
    turns: list[dict] = []
    system_prompt = metadata.get("system_prompt", PRM_SYSTEM_PROMPT)
    if system_prompt is not None:
        turns.append({"from": "system", "value": system_prompt})
    prefix = IMAGE_TOKEN_PREFIX if metadata.get("image_token") else ""
    for position, step in enumerate(record.steps):
        text = prefix + first_turn(record.question, step.text) if position == 0 else step.text
        turns.append({"from": "human", "value": text})
        turns.append({"from": "gpt", "value": tokens[step.label]})
    conversation: dict = {"id": int(record.solution_key) if metadata.get("id_type") == "int" else record.solution_key}
    image = image_value(record.image_paths, (record.item_metadata or {}).get("image_form"))
    if image is not None:
        conversation["image"] = image
    conversation["conversations"] = turns
    conversation.update(metadata.get("extra", {}))
    return conversation
