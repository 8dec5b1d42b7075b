"""The VisualPRM conversation on tiny Qwen2-VL and LLaVA backbones built locally (no downloads)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from prm.core.conversation import (
    IGNORE_INDEX,
    collate_conversations,
    encode_conversation,
    label_token_ids,
    load_processor,
    prm_messages,
    render,
)
from prm.core.prompts import (
    NEGATIVE_TOKEN,
    POSITIVE_TOKEN,
    PRM_SYSTEM_PROMPT,
    SOLUTION_INSTRUCTION,
    STEPMARK_SYSTEM_PROMPT,
    policy_prompt,
)
from prm.core.tiny_models import build_tiny_backbone

FAMILIES = ["qwen2_vl", "llava"]
# "+" and "-" inside the question and steps must not be mistaken for answers.
QUESTION = "What is 2+3-1?"
STEPS = ["We add 2 + 3 = 5.", "Then 5 - 1 = 3.", "Answer: 3"]


@pytest.fixture(scope="module", params=FAMILIES)
def processor(request, tmp_path_factory):
    directory = build_tiny_backbone(request.param, tmp_path_factory.mktemp(request.param))
    return load_processor(directory)


def _image(color: str = "red") -> Image.Image:
    return Image.new("RGB", (80, 60), color)


def _image_token_count(processor, input_ids: torch.Tensor) -> int:
    return int((input_ids == processor.image_token_id).sum())


def test_label_tokens_are_single_tokens_of_the_answers(processor):
    ids = label_token_ids(processor)
    tokens = processor.tokenizer.convert_ids_to_tokens([ids.positive, ids.negative])
    # Qwen2 gives the bare "+"; the Llama tokenizer of LLaVA gives "▁+" after the template's space.
    assert [token.lstrip("▁Ġ") for token in tokens] == [POSITIVE_TOKEN, NEGATIVE_TOKEN]
    assert ids.positive != ids.negative


def test_label_positions_point_exactly_at_the_answers(processor):
    ids = label_token_ids(processor)
    encoded = encode_conversation(
        processor, question=QUESTION, steps=STEPS, images=[_image()], step_labels=[True, False, True]
    )
    assert len(encoded.label_positions) == len(STEPS)
    assert encoded.input_ids[encoded.label_positions].tolist() == [ids.positive, ids.negative, ids.positive]
    assert encoded.answer_positions == [position - 1 for position in encoded.label_positions]
    # The question and steps contain "+"/"-" too, yet only assistant answers were picked.
    if processor.tokenizer.convert_tokens_to_ids(POSITIVE_TOKEN) == ids.positive:
        assert int((encoded.input_ids == ids.positive).sum()) > 2
    # Independent check: the tokens before each label are exactly the conversation cut there and
    # ended with the generation prompt, i.e. what the model sees when asked for that answer.
    answers = [POSITIVE_TOKEN, NEGATIVE_TOKEN, POSITIVE_TOKEN]
    for index, position in enumerate(encoded.label_positions):
        messages = prm_messages(
            question=QUESTION, steps=STEPS[: index + 1], answers=answers[:index], num_images=1
        )
        prompt = render(processor, messages, add_generation_prompt=True)
        prefix = processor(text=[prompt], images=[_image()], return_tensors="pt", add_special_tokens=False)
        assert prefix["input_ids"][0].tolist() == encoded.input_ids[:position].tolist()


def test_training_labels_only_at_labelled_answers(processor):
    ids = label_token_ids(processor)
    encoded = encode_conversation(
        processor, question=QUESTION, steps=STEPS, images=[_image()], step_labels=[True, False, None]
    )
    first, second, unlabelled = encoded.label_positions
    assert encoded.labels[first] == ids.positive
    assert encoded.labels[second] == ids.negative
    # The unlabelled step stays in the conversation (placeholder "+") without loss.
    assert encoded.input_ids[unlabelled] == ids.positive
    assert encoded.labels[unlabelled] == IGNORE_INDEX
    assert int((encoded.labels != IGNORE_INDEX).sum()) == 2
    assert encoded.labels.shape == encoded.input_ids.shape
    assert encoded.attention_mask.tolist() == [1] * len(encoded.input_ids)


def test_scoring_conversation_has_placeholder_answers_and_no_loss(processor):
    ids = label_token_ids(processor)
    encoded = encode_conversation(processor, question=QUESTION, steps=STEPS, images=[_image()])
    assert encoded.input_ids[encoded.label_positions].tolist() == [ids.positive] * 3
    assert bool((encoded.labels == IGNORE_INDEX).all())


def test_the_system_prompt_and_first_turn_are_rendered_as_the_released_pipeline(processor):
    messages = prm_messages(question=QUESTION, steps=STEPS, answers=["+", "-", "+"], num_images=1)
    text = render(processor, messages)
    assert PRM_SYSTEM_PROMPT in text and PRM_SYSTEM_PROMPT.startswith("You are an advanced AI assistant")
    assert 'Respond with **"+"** if you believe the solution process is correct up to this step.' in PRM_SYSTEM_PROMPT
    # The question the PRM reads is the policy's prompt, instruction included.
    prompt = policy_prompt(QUESTION)
    assert prompt.startswith(QUESTION) and SOLUTION_INSTRUCTION in prompt
    assert f"{prompt}\n\n### Solution Process:\n{STEPS[0]}" in text
    assert text.index(STEPS[1]) > text.index(STEPS[0])
    # The image sits right after "### Question:\n" (the reference's "### Question:\n<image>\n{prompt}").
    user = messages[1]["content"]
    assert [part["type"] for part in user] == ["text", "image", "text"]
    assert user[0]["text"] == "### Question:\n" and user[2]["text"].startswith("\n" + prompt)
    if "<|image_pad|>" in text:  # Qwen2-VL renders the image where the message puts it
        assert "### Question:\n<|vision_start|><|image_pad|><|vision_end|>\n" + prompt in text


def test_stepmark_prompt_and_bare_question_are_options(processor):
    messages = prm_messages(
        question=QUESTION, steps=STEPS, answers=["+"] * 3, num_images=0,
        system_prompt=STEPMARK_SYSTEM_PROMPT, question_format="question",
    )
    text = render(processor, messages)
    assert STEPMARK_SYSTEM_PROMPT in text and PRM_SYSTEM_PROMPT not in text
    assert f"### Question:\n{QUESTION}\n\n### Solution Process:\n{STEPS[0]}" in text
    with pytest.raises(ValueError, match="unknown question format"):
        prm_messages(question=QUESTION, steps=STEPS, answers=[], num_images=0, question_format="prose")


def test_tokenisation_is_pure_and_repeatable(processor):
    # The same inputs encode to the same ids every time; the options change the question the PRM sees.
    first = encode_conversation(processor, question=QUESTION, steps=STEPS, images=[_image()])
    again = encode_conversation(processor, question=QUESTION, steps=STEPS, images=[_image()])
    assert first.input_ids.tolist() == again.input_ids.tolist() and first.label_positions == again.label_positions
    with_options = encode_conversation(processor, question=QUESTION, steps=STEPS, images=[_image()], options=["3", "4"])
    assert len(with_options.input_ids) > len(first.input_ids)


def test_images_reach_the_inputs(processor):
    none = encode_conversation(processor, question=QUESTION, steps=STEPS)
    one = encode_conversation(processor, question=QUESTION, steps=STEPS, images=[_image()])
    two = encode_conversation(processor, question=QUESTION, steps=STEPS, images=[_image(), _image("blue")])
    assert none.pixel_inputs == {}
    assert _image_token_count(processor, none.input_ids) == 0
    per_image = _image_token_count(processor, one.input_ids)
    assert per_image > 0
    assert _image_token_count(processor, two.input_ids) == 2 * per_image
    assert "pixel_values" in one.pixel_inputs
    assert two.pixel_inputs["pixel_values"].shape[0] == 2 * one.pixel_inputs["pixel_values"].shape[0]
    # The image tokens come before every answer, and the answers keep their distance to the end.
    assert len(one.input_ids) - one.label_positions[0] == len(none.input_ids) - none.label_positions[0]


def test_collate_pads_on_the_right(processor):
    short = encode_conversation(
        processor, question=QUESTION, steps=STEPS[:1], images=[_image()], step_labels=[False]
    )
    long = encode_conversation(
        processor, question=QUESTION, steps=STEPS, images=[_image()], step_labels=[True] * 3
    )
    pad = processor.tokenizer.pad_token_id
    batch = collate_conversations([short, long], pad_token_id=pad)
    width = len(long.input_ids)
    assert batch.model_inputs["input_ids"].shape == (2, width)
    assert batch.model_inputs["input_ids"][0, : len(short.input_ids)].tolist() == short.input_ids.tolist()
    assert batch.model_inputs["input_ids"][0, len(short.input_ids) :].tolist() == [pad] * (
        width - len(short.input_ids)
    )
    assert batch.model_inputs["attention_mask"][0].tolist() == [1] * len(short.input_ids) + [0] * (
        width - len(short.input_ids)
    )
    assert bool((batch.labels[0, len(short.input_ids) :] == IGNORE_INDEX).all())
    assert batch.answer_positions == [short.answer_positions, long.answer_positions]
    assert batch.model_inputs["pixel_values"].shape[0] == 2 * short.pixel_inputs["pixel_values"].shape[0]
    for key in short.token_inputs:  # Qwen2-VL's mm_token_type_ids follow the tokens
        assert batch.model_inputs[key].shape == (2, width)


def test_bad_step_labels_are_rejected(processor):
    with pytest.raises(ValueError, match="2 step labels for 3 steps"):
        encode_conversation(processor, question=QUESTION, steps=STEPS, step_labels=[True, False])
    with pytest.raises(ValueError, match="at least one step"):
        encode_conversation(processor, question=QUESTION, steps=[])
