"""The VisualPRM conversation, rendered through a backbone's own processor and chat template.

system: PRM prompt; user: "### Question:\\n<images>\\n{policy prompt}\\n\\n### Solution Process:\\n{step_0}";
assistant: "+" or "-"; user: step_1; assistant: "+" or "-"; ... (prm.core.prompts has the texts and
the options: the system prompt, and whether the question is the policy's prompt or the bare question)

`encode_conversation` returns the token ids the model sees and, for each step, the index of its
label token and of the position whose logits predict it. Positions are found from the rendered text
(character offsets of each assistant answer) and checked against the token ids, so a template or
tokenizer that would silently shift them raises instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prm.core.prompts import (
    DEFAULT_QUESTION_FORMAT,
    NEGATIVE_TOKEN,
    POSITIVE_TOKEN,
    PRM_SYSTEM_PROMPT,
    first_turn_content,
    prm_question,
)

IGNORE_INDEX = -100
# Keys a processor returns that run along the token axis and so are padded, not concatenated.
_TOKEN_ALIGNED_KEYS = frozenset({"input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids"})


@dataclass(frozen=True)
class LabelTokenIds:
    """Ids of the tokens that carry "+" and "-" as answers inside this backbone's conversation."""

    positive: int
    negative: int


@dataclass
class EncodedConversation:
    """One conversation as model inputs (1-D tensors; pixel inputs as the processor returns them)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor  # IGNORE_INDEX except at the label tokens of labelled steps
    label_positions: list[int]  # per step: index of its "+"/"-" token
    answer_positions: list[int]  # per step: label_position - 1, whose logits predict the label
    token_inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # other per-token inputs, 1-D
    pixel_inputs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ConversationBatch:
    """Right-padded conversations: every tensor in `model_inputs` goes straight to the model."""

    model_inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    answer_positions: list[list[int]]
    label_positions: list[list[int]]


def prm_messages(
    *,
    question: str,
    steps: Sequence[str],
    answers: Sequence[str],
    num_images: int,
    options: Sequence[str] = (),
    system_prompt: str = PRM_SYSTEM_PROMPT,
    question_format: str = DEFAULT_QUESTION_FORMAT,
) -> list[dict]:
    """Chat messages of the PRM conversation; `answers` may be shorter than `steps` (a truncated dialogue).

    `question` is the item's question; the PRM reads it as `question_format` says (by default the
    policy's prompt, instruction included, as the released pipeline)."""
    if not steps:
        raise ValueError("a solution needs at least one step")
    text = prm_question(question, options=options, question_format=question_format)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": system_prompt}]},
        {"role": "user", "content": first_turn_content(text, steps[0], num_images=num_images)},
    ]
    for index, step in enumerate(steps):
        if index > 0:
            messages.append({"role": "user", "content": [{"type": "text", "text": step}]})
        if index < len(answers):
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answers[index]}]})
    return messages


def render(processor, messages: list[dict], *, add_generation_prompt: bool = False) -> str:
    return processor.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _answer_char_offsets(processor, messages: list[dict], text: str) -> list[int]:
    """Character offset of each assistant answer in `text`, located via the generation prompt."""
    offsets = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = render(processor, messages[:index], add_generation_prompt=True)
        if not text.startswith(prefix):
            raise ValueError(
                "the chat template renders a conversation prefix that the full conversation does not start with"
            )
        offset = len(prefix)
        while offset < len(text) and text[offset].isspace():  # e.g. llava's "ASSISTANT:" + " +"
            offset += 1
        answer = message["content"][0]["text"]
        if text[offset : offset + len(answer)] != answer:
            raise ValueError(f"assistant answer {answer!r} not found after the generation prompt")
        offsets.append(offset)
    return offsets


def _label_token_index(encoding, char_offset: int, text: str) -> int:
    token_index = encoding.char_to_token(char_offset)
    if token_index is None:
        raise ValueError(f"no token covers the answer at character {char_offset}")
    start, end = encoding.token_to_chars(token_index)
    if text[start:end].strip() != text[char_offset]:
        raise ValueError(
            f"the answer {text[char_offset]!r} is merged into the token {text[start:end]!r}; "
            "this tokenizer cannot carry single-token labels in this template"
        )
    return token_index


def label_token_ids(processor) -> LabelTokenIds:
    """Find the ids of "+" and "-" as they tokenize in an assistant turn of this backbone's template.

    Probing a rendered conversation (rather than converting the bare strings) catches tokenizers
    where the answer becomes e.g. "▁+" after the template's space.
    """
    found = {}
    for answer in (POSITIVE_TOKEN, NEGATIVE_TOKEN):
        messages = prm_messages(question="Q", steps=["S"], answers=[answer], num_images=0)
        text = render(processor, messages)
        (offset,) = _answer_char_offsets(processor, messages, text)
        encoding = processor.tokenizer(text, add_special_tokens=False)
        found[answer] = encoding["input_ids"][_label_token_index(encoding, offset, text)]
    if found[POSITIVE_TOKEN] == found[NEGATIVE_TOKEN]:
        raise ValueError('"+" and "-" tokenize to the same id')
    return LabelTokenIds(positive=found[POSITIVE_TOKEN], negative=found[NEGATIVE_TOKEN])


def encode_conversation(
    processor,
    *,
    question: str,
    steps: Sequence[str],
    images: Sequence[Any] = (),
    step_labels: Sequence[bool | None] | None = None,
    label_ids: LabelTokenIds | None = None,
    options: Sequence[str] = (),
    system_prompt: str = PRM_SYSTEM_PROMPT,
    question_format: str = DEFAULT_QUESTION_FORMAT,
) -> EncodedConversation:
    """Tokenize the full conversation (one assistant answer per step) with the backbone's processor.

    `step_labels[i]`: True ("+"), False ("-") or None (the step stays in the conversation with a "+"
    placeholder and no loss). Without `step_labels` every answer is the "+" placeholder (scoring).
    """
    if step_labels is not None and len(step_labels) != len(steps):
        raise ValueError(f"{len(step_labels)} step labels for {len(steps)} steps")
    label_ids = label_ids or label_token_ids(processor)
    labels_per_step = list(step_labels) if step_labels is not None else [None] * len(steps)
    answers = [NEGATIVE_TOKEN if label is False else POSITIVE_TOKEN for label in labels_per_step]
    messages = prm_messages(
        question=question,
        steps=steps,
        answers=answers,
        num_images=len(images),
        options=options,
        system_prompt=system_prompt,
        question_format=question_format,
    )
    text = render(processor, messages)
    char_offsets = _answer_char_offsets(processor, messages, text)

    # Token indices in the text before the processor expands image placeholders ...
    encoding = processor.tokenizer(text, add_special_tokens=False)
    text_ids = encoding["input_ids"]
    text_positions = [_label_token_index(encoding, offset, text) for offset in char_offsets]

    processed = processor(
        text=[text], images=list(images) or None, return_tensors="pt", add_special_tokens=False
    )
    input_ids = processed["input_ids"][0]
    # ... shifted by the expansion, which happens only in the first user turn, before every answer.
    shift = len(input_ids) - len(text_ids)
    first = text_positions[0]
    if input_ids[first + shift :].tolist() != text_ids[first:]:
        raise ValueError("image placeholders expand after the first answer; labels cannot be located")
    label_positions = [position + shift for position in text_positions]

    expected = {POSITIVE_TOKEN: label_ids.positive, NEGATIVE_TOKEN: label_ids.negative}
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for position, answer, label in zip(label_positions, answers, labels_per_step, strict=True):
        if int(input_ids[position]) != expected[answer]:
            raise ValueError(f"token {int(input_ids[position])} at a label position is not {answer!r}")
        if label is not None:
            labels[position] = input_ids[position]

    token_inputs, pixel_inputs = {}, {}
    for key, value in processed.items():
        if key in ("input_ids", "attention_mask"):
            continue
        if key in _TOKEN_ALIGNED_KEYS:
            token_inputs[key] = value[0]
        else:
            pixel_inputs[key] = value
    return EncodedConversation(
        input_ids=input_ids,
        attention_mask=processed["attention_mask"][0],
        labels=labels,
        label_positions=label_positions,
        answer_positions=[position - 1 for position in label_positions],
        token_inputs=token_inputs,
        pixel_inputs=pixel_inputs,
    )


def collate_conversations(
    conversations: Sequence[EncodedConversation], *, pad_token_id: int
) -> ConversationBatch:
    """Pad on the right and concatenate pixel inputs along their first axis.

    Right padding keeps every real token at the position it has alone, so causal attention and the
    default position ids (and Qwen2-VL's 3-D rope, which reads the attention mask) are unchanged and
    the answer positions need no offset.
    """
    if not conversations:
        raise ValueError("nothing to collate")
    width = max(len(conversation.input_ids) for conversation in conversations)

    def padded(tensors: list[torch.Tensor], value: int) -> torch.Tensor:
        out = torch.full((len(tensors), width), value, dtype=tensors[0].dtype)
        for row, tensor in enumerate(tensors):
            out[row, : len(tensor)] = tensor
        return out

    model_inputs = {
        "input_ids": padded([c.input_ids for c in conversations], pad_token_id),
        "attention_mask": padded([c.attention_mask for c in conversations], 0),
    }
    # Keys from every conversation, not the first: a batch may mix image and text-only conversations.
    token_keys = sorted({key for c in conversations for key in c.token_inputs})
    for key in token_keys:
        # A conversation without this per-token input (no images) gets zeros: "text token" in Qwen2-VL's
        # mm_token_type_ids, the only such key a text-only conversation may lack.
        model_inputs[key] = padded(
            [c.token_inputs.get(key, torch.zeros_like(c.input_ids)) for c in conversations], 0
        )
    pixel_keys = sorted({key for c in conversations for key in c.pixel_inputs})
    for key in pixel_keys:
        # Pixel inputs stack the images of the batch in order; text-only conversations add none.
        model_inputs[key] = torch.cat([c.pixel_inputs[key] for c in conversations if key in c.pixel_inputs], dim=0)
    return ConversationBatch(
        model_inputs=model_inputs,
        labels=padded([c.labels for c in conversations], IGNORE_INDEX),
        answer_positions=[c.answer_positions for c in conversations],
        label_positions=[c.label_positions for c in conversations],
    )


def _image_only_processor_class(processor_class: type) -> type:
    """The processor class without its video processor, which transformers 5 cannot build without
    torchvision; the PRM conversation has images only."""

    class ImageOnlyProcessor(processor_class):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            # The parent passes video_processor=None positionally; the base class pairs positional
            # arguments with this class's attributes, so it is dropped.
            super().__init__(
                image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs
            )

    ImageOnlyProcessor.__name__ = processor_class.__name__
    ImageOnlyProcessor.__qualname__ = processor_class.__qualname__
    return ImageOnlyProcessor


def processor_class_name(directory: str | Path) -> str | None:
    for name in ("processor_config.json", "preprocessor_config.json"):
        path = Path(directory) / name
        if path.exists():
            class_name = json.loads(path.read_text()).get("processor_class")
            if class_name:
                return class_name
    return None


def load_processor(directory: str | Path):
    """AutoProcessor for a backbone folder; processors that also want a video processor (Qwen2-VL,
    SmolVLM) are loaded image-only when the folder has no video processor config or torchvision is
    missing."""
    import transformers

    class_name = processor_class_name(directory)
    processor_class = getattr(transformers, class_name, None) if class_name else None
    if (
        processor_class is not None
        and "video_processor" in processor_class.get_attributes()
        and not (
            (Path(directory) / "video_preprocessor_config.json").exists()
            and transformers.utils.is_torchvision_available()
        )
    ):
        return _image_only_processor_class(processor_class).from_pretrained(directory)
    return transformers.AutoProcessor.from_pretrained(directory)


def image_only_processor(processor_class: type, **components):
    """Build `processor_class` from an image processor and tokenizer alone (see load_processor)."""
    return _image_only_processor_class(processor_class)(**components)
