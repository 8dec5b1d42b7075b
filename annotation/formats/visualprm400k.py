"""VisualPRM400K (v1, v1.1) training conversations: one solution per JSON line, "+" or "-" per step.

As OpenGVLab's released writer (InternVL, `tools/reasoning_data_pipeline/
visualprm_data_pipeline_postprocess.py`) emits them from Raw records:

  {"id": -1, "image": <the Raw record's image>, "conversations": [
     {"from": "system", "value": <PRM system prompt>},
     {"from": "human", "value": "### Question:\n<image>\n{prompt}\n\n### Solution Process:\n{step_0}"},
     {"from": "gpt", "value": "+"}, {"from": "human", "value": step_1}, {"from": "gpt", "value": "-"}, ...]}

The question is the Raw record's full prompt with its <image> placeholders; every record has id
-1 and a question has several responses (four by default). So:
- items are (images, prompt), the item the Raw format makes for the same question; the item's
  question is the prompt without its placeholders (processors add their own image tokens);
- a record with id -1 gets its solution key from a hash of its steps, as Raw keys the same
  response (repeats get -2, -3, ...); any other id is the solution key;
- labels are stored as AutoLabel(kind="imported", value=+1/-1).
An older layout with "<image>\n" before "### Question:" is read too. What a record says beyond
that (a system prompt that is neither Stepmark's nor the released one, an integer id, extra
keys) is kept in the solution's metadata so export gives the record back as it was.

Export writes one <image> per image in the first human turn, as InternVL's fine-tuning loader
requires (it counts them against the images), and `internvl_meta` gives the meta json that
loader reads beside the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from annotation.formats.reading import RecordReader, iter_json_records
from annotation.formats.records import ExportRecord, ParsedAutoLabel, ParsedItem, ParsedSolution
from annotation.formats.step_labels import binary_labels, neutral_option
from annotation.formats.visualprm400k_raw import (
    IMAGE_PLACEHOLDER,
    SolutionKeys,
    image_value,
    item_external_id,
    policy_prompt,
    read_image_field,
    without_image_placeholders,
)
from annotation.steps import join_steps
from prm.core.prompts import (
    FIRST_TURN_PREFIX,
    FIRST_TURN_SEPARATOR,
    NEGATIVE_TOKEN,
    POSITIVE_TOKEN,
    PRM_SYSTEM_PROMPT,
    VISUALPRM_SYSTEM_PROMPT,
    first_turn,
)

MEDIA_TYPE = "application/x-ndjson"
SUFFIX = ".jsonl"
DEFAULT_SOURCE = "VisualPRM400K"
IMAGE_TOKEN_PREFIX = IMAGE_PLACEHOLDER + "\n"
KNOWN_FIELDS = frozenset(("id", "image", "conversations"))
WRITER_ID = -1  # the released writer's id on every record: not a key
# System prompts recognised by name, so 400K solutions do not each carry a copy.
KNOWN_SYSTEM_PROMPTS = {"visualprm": VISUALPRM_SYSTEM_PROMPT}
_LABEL_VALUES = {POSITIVE_TOKEN: 1, NEGATIVE_TOKEN: -1}


# --- import ---


def parse(source) -> Iterator[ParsedSolution]:
    label_source = str(source.options.get("source") or DEFAULT_SOURCE)
    data_source = str(source.options.get("data_source") or source.path.stem)
    keys = SolutionKeys()
    for line, record in iter_json_records(source.path):
        reader = RecordReader(record, file=source.name, line=line)
        yield _solution(reader, label_source=label_source, data_source=data_source, keys=keys)


def _solution(reader: RecordReader, *, label_source: str, data_source: str, keys: SolutionKeys) -> ParsedSolution:
    record = reader.record
    record_id = reader.get("id", (str, int))
    if record_id == "" or type(record_id) is bool:
        raise reader.error(f"expected a non-empty string or an integer, got {record_id!r}", "id")
    paths, image_form = read_image_field(reader, required=False)
    turns = reader.get("conversations", list)
    metadata: dict = {}
    start = 0
    if turns and type(turns[0]) is dict and turns[0].get("from") == "system":
        system_prompt = turns[0].get("value")
        if type(system_prompt) is not str:
            raise reader.error("expected a string", "conversations[0].value")
        if system_prompt != PRM_SYSTEM_PROMPT:
            name = next((name for name, text in KNOWN_SYSTEM_PROMPTS.items() if text == system_prompt), None)
            if name is not None:
                metadata["system_prompt_name"] = name
            else:
                metadata["system_prompt"] = system_prompt
        start = 1
    else:
        metadata["system_prompt"] = None  # the record had no system turn; export writes none
    prompt: str | None = None
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
        elif prompt is None:
            prompt, first_step, leading_images = _first_turn(reader, value, index)
            if leading_images:
                metadata["image_token"] = True
            steps.append(first_step)
        else:
            steps.append(value)
    if not steps:
        raise reader.error("no human turn: the solution has no steps", "conversations")
    if len(labels) < len(steps):
        raise reader.error("the last step has no gpt turn with its label", f"conversations[{len(turns)}]")
    external_id = item_external_id(paths, image_form, prompt)
    response = join_steps(steps)
    if record_id == WRITER_ID:
        key = keys.key(external_id, response)
        metadata["id"] = WRITER_ID
    else:
        key = str(record_id)
        if type(record_id) is int:
            metadata["id_type"] = "int"
    if len(record) > 3 and (record.keys() - KNOWN_FIELDS):
        metadata["extra"] = {name: value for name, value in record.items() if name not in KNOWN_FIELDS}
    item_metadata: dict = {"prompt": prompt}
    if image_form is not None:
        item_metadata["image_form"] = image_form
    return ParsedSolution(
        item=ParsedItem(
            external_id=external_id,
            question=without_image_placeholders(prompt),
            data_source=data_source,
            metadata=item_metadata,
            image_paths=paths,
        ),
        key=key,
        steps=steps,
        response=response,
        metadata=metadata,
        auto=labels,
        line=reader.line,
    )


def _first_turn(reader: RecordReader, value: str, index: int) -> tuple[str, str, int]:
    """(prompt, first step, how many "<image>\\n" lines came before "### Question:")."""
    body = value
    leading = 0
    while body.startswith(IMAGE_TOKEN_PREFIX):
        body = body[len(IMAGE_TOKEN_PREFIX) :]
        leading += 1
    if not body.startswith(FIRST_TURN_PREFIX) or FIRST_TURN_SEPARATOR not in body:
        raise reader.error(
            'the first human turn must read "### Question:\\n<question>\\n\\n### Solution Process:\\n<first step>"',
            f"conversations[{index}].value",
        )
    prompt, _, first_step = body[len(FIRST_TURN_PREFIX) :].partition(FIRST_TURN_SEPARATOR)
    return prompt, first_step, leading


# --- export ---


def write(records: Iterable[ExportRecord], out: BinaryIO, *, options: dict) -> int:
    """Write the solutions `step_labels.binary_labels` keeps; neutral (0) steps follow option `neutral`."""
    neutral = neutral_option(options)
    written = 0
    for record in records:
        conversation = conversation_record(record, neutral=neutral)
        if conversation is not None:
            out.write((json.dumps(conversation, ensure_ascii=False) + "\n").encode("utf-8"))
            written += 1
    return written


def conversation_record(record: ExportRecord, *, neutral: str) -> dict | None:
    """The conversation object for `record`, or None when its labels give nothing to write."""
    labels = binary_labels(record.steps, neutral=neutral)
    if labels is None:
        return None
    metadata = record.solution_metadata or {}
    turns: list[dict] = []
    if "system_prompt_name" in metadata:
        system_prompt = KNOWN_SYSTEM_PROMPTS.get(metadata["system_prompt_name"], PRM_SYSTEM_PROMPT)
    else:
        system_prompt = metadata.get("system_prompt", PRM_SYSTEM_PROMPT)
    if system_prompt is not None:
        turns.append({"from": "system", "value": system_prompt})
    for step, label in zip(record.steps, labels, strict=False):
        text = _first_human_turn(record, step.text) if step.index == record.steps[0].index else step.text
        turns.append({"from": "human", "value": text})
        turns.append({"from": "gpt", "value": POSITIVE_TOKEN if label else NEGATIVE_TOKEN})
    if "id" in metadata:
        record_id = metadata["id"]
    else:
        record_id = int(record.solution_key) if metadata.get("id_type") == "int" else record.solution_key
    conversation: dict = {"id": record_id}
    image = image_value(record.image_paths, (record.item_metadata or {}).get("image_form"))
    if image is not None:
        conversation["image"] = image
    conversation["conversations"] = turns
    if record.carries_error_categories:  # an extension field: InternVL's loader reads only its own keys
        conversation["error_categories"] = record.error_categories(len(labels))
    conversation.update(metadata.get("extra", {}))
    return conversation


def _first_human_turn(record: ExportRecord, first_step: str) -> str:
    """The question and first step, with one <image> per image (none for text-only rows)."""
    if (record.solution_metadata or {}).get("image_token"):
        # The record placed its image lines before "### Question:"; keep that layout.
        question = without_image_placeholders((record.item_metadata or {}).get("prompt") or record.question)
        return IMAGE_TOKEN_PREFIX * len(record.image_paths) + first_turn(question, first_step)
    return first_turn(policy_prompt(record), first_step)


def internvl_meta(*, name: str, annotation: str, root: str, length: int) -> dict:
    """The meta json InternVL's fine-tuning loader (internvl_chat_finetune.py, --meta_path) reads.

    `root` is joined with each record's image path; `annotation` must end in "jsonl".
    """
    return {name: {"root": root, "annotation": annotation, "data_augment": False, "repeat_time": 1, "length": length}}
