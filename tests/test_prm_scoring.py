"""One-pass PRM scoring equals the one-pass-per-step reference, on tiny Qwen2-VL and LLaVA backbones."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from prm.core.conversation import encode_conversation
from prm.core.scoring import PRMScorer, ReferenceScorer, aggregate_step_scores
from prm.core.tiny_models import build_tiny_backbone

QUESTION = "What is the area of the triangle in the figure?"
SOLUTIONS = [
    ["The base is 6 and the height is 4.", "Area = 1/2 * 6 * 4 = 12.", "Answer: 12"],
    ["Area = 6 * 4 = 24."],
    ["Look at the image.", "The base is 6.", "The height is 4.", "So 1/2 * 6 * 4 = 12.", "Answer: B"],
]
TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=["qwen2_vl", "llava"])
def scorers(request, tmp_path_factory):
    directory = build_tiny_backbone(request.param, tmp_path_factory.mktemp(request.param))
    return PRMScorer(directory, batch_size=8), ReferenceScorer(directory)


@pytest.fixture(scope="module")
def images():
    return [Image.new("RGB", (80, 60), (200, 30, 30))]


def _assert_close(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected, strict=True):
        assert abs(a - b) < TOLERANCE, (actual, expected)


def test_one_pass_equals_reference_for_one_solution(scorers, images):
    fast, reference = scorers
    steps = SOLUTIONS[0]
    scores = fast.score_steps(question=QUESTION, steps=steps, images=images)
    _assert_close(scores, reference.score_steps(question=QUESTION, steps=steps, images=images))
    assert all(0.0 < score < 1.0 for score in scores)


def test_batched_solutions_of_different_lengths_equal_reference(scorers, images):
    fast, reference = scorers
    batched = fast.score_solutions(question=QUESTION, solutions=SOLUTIONS, images=images)
    assert [len(scores) for scores in batched] == [3, 1, 5]
    for steps, scores in zip(SOLUTIONS, batched, strict=True):
        _assert_close(scores, reference.score_steps(question=QUESTION, steps=steps, images=images))


def test_batches_split_by_batch_size_give_the_same_scores(scorers, images):
    fast, _ = scorers
    whole = fast.score_solutions(question=QUESTION, solutions=SOLUTIONS, images=images)
    fast.batch_size = 2
    try:
        split = fast.score_solutions(question=QUESTION, solutions=SOLUTIONS, images=images)
    finally:
        fast.batch_size = 8
    for a, b in zip(whole, split, strict=True):
        _assert_close(a, b)


def test_the_comparison_would_catch_an_off_by_one_position(scorers, images):
    # Guards the tests above: reading the logits one token later gives clearly different scores,
    # so the 1e-4 agreement is not an accident of a model that scores everything alike.
    fast, reference = scorers
    steps = SOLUTIONS[0]
    encoded = encode_conversation(fast.processor, question=QUESTION, steps=steps, images=images)
    inputs = {"input_ids": encoded.input_ids[None], "attention_mask": encoded.attention_mask[None]}
    inputs |= {key: value[None] for key, value in encoded.token_inputs.items()}
    inputs |= encoded.pixel_inputs
    with torch.inference_mode():
        logits = fast.model(**inputs).logits[0]
    shifted = fast.positive_probability(logits[encoded.label_positions]).tolist()
    expected = reference.score_steps(question=QUESTION, steps=steps, images=images)
    assert max(abs(a - b) for a, b in zip(shifted, expected, strict=True)) > 1e-2


def test_the_image_changes_the_scores(scorers, images):
    fast, _ = scorers
    red = fast.score_steps(question=QUESTION, steps=SOLUTIONS[0], images=images)
    blue = fast.score_steps(
        question=QUESTION, steps=SOLUTIONS[0], images=[Image.new("RGB", (80, 60), (10, 40, 220))]
    )
    assert max(abs(a - b) for a, b in zip(red, blue, strict=True)) > 1e-4


def test_response_scores_use_the_scorers_aggregation(scorers, images):
    fast, _ = scorers
    steps_scores = fast.score_solutions(question=QUESTION, solutions=SOLUTIONS, images=images)
    fast.aggregation = "min"
    try:
        responses = fast.score_responses(question=QUESTION, solutions=SOLUTIONS, images=images)
    finally:
        fast.aggregation = "mean"
    assert responses == pytest.approx([min(scores) for scores in steps_scores], abs=TOLERANCE)


def test_aggregate_step_scores():
    scores = [0.9, 0.5, 0.8]
    assert aggregate_step_scores(scores) == pytest.approx(2.2 / 3)  # mean is the default
    assert aggregate_step_scores(scores, method="min") == 0.5
    assert aggregate_step_scores(scores, method="last") == 0.8
    assert aggregate_step_scores(scores, method="product") == pytest.approx(0.36)  # 0.9 * 0.5 * 0.8
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate_step_scores(scores, method="max")
    with pytest.raises(ValueError, match="no step scores"):
        aggregate_step_scores([])
    assert math.isclose(aggregate_step_scores([0.25], method="product"), 0.25)


def test_unknown_aggregation_is_rejected_at_construction(tmp_path):
    with pytest.raises(ValueError, match="unknown aggregation"):
        PRMScorer(tmp_path, aggregation="median")


def _scores_of_batch(scorer: PRMScorer, conversations) -> list[list[float]]:
    from prm.core.conversation import collate_conversations

    batch = collate_conversations(conversations, pad_token_id=scorer.pad_token_id)
    with torch.inference_mode():
        logits = scorer.model(**scorer.to_device(batch.model_inputs)).logits
    return [scorer.positive_probability(logits[row, positions]).tolist() for row, positions in enumerate(batch.answer_positions)]


@pytest.mark.parametrize("order", ["image_first", "text_first"])
def test_a_batch_mixing_image_and_text_only_conversations_scores_each_as_alone(scorers, images, order):
    # Training batches mix items with and without images; either order must keep every image.
    fast, _ = scorers
    with_image = encode_conversation(fast.processor, question=QUESTION, steps=SOLUTIONS[0], images=images)
    text_only = encode_conversation(fast.processor, question=QUESTION, steps=SOLUTIONS[2])
    second_image = encode_conversation(
        fast.processor, question=QUESTION, steps=SOLUTIONS[1], images=[Image.new("RGB", (80, 60), (10, 40, 220))]
    )
    conversations = [with_image, text_only, second_image] if order == "image_first" else [text_only, with_image, second_image]
    alone = [_scores_of_batch(fast, [conversation])[0] for conversation in conversations]
    mixed = _scores_of_batch(fast, conversations)
    for a, b in zip(mixed, alone, strict=True):
        _assert_close(a, b)


def test_the_scorer_reads_a_model_with_the_prompts_it_was_trained_with(tmp_path):
    import json

    from prm.core.scoring import recorded_prompts

    # A backbone Stepmark did not train: the released pipeline's prompts.
    assert recorded_prompts(tmp_path) == {"system_prompt": "visualprm", "prm_question": "policy_prompt"}
    (tmp_path / "train_config.json").write_text(json.dumps({"system_prompt": "stepmark", "prm_question": "question"}))
    assert recorded_prompts(tmp_path) == {"system_prompt": "stepmark", "prm_question": "question"}
    # Trained before the prompts were recorded: the short prompt and the bare question it was trained on.
    (tmp_path / "train_config.json").write_text(json.dumps({"learning_rate": 1e-5}))
    assert recorded_prompts(tmp_path) == {"system_prompt": "stepmark", "prm_question": "question"}


def test_the_prompts_reach_the_model(scorers, images):
    fast, _ = scorers
    default = fast.score_steps(question=QUESTION, steps=SOLUTIONS[0], images=images)
    saved = fast.system_prompt, fast.question_format
    try:
        from prm.core.prompts import STEPMARK_SYSTEM_PROMPT

        fast.system_prompt, fast.question_format = STEPMARK_SYSTEM_PROMPT, "question"
        other = fast.score_steps(question=QUESTION, steps=SOLUTIONS[0], images=images)
    finally:
        fast.system_prompt, fast.question_format = saved
    assert max(abs(a - b) for a, b in zip(default, other, strict=True)) > 1e-4
