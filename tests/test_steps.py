"""Splitting responses into steps (annotation.steps)."""

import pytest

from annotation.steps import join_steps, merge_steps, split_steps


def test_blank_lines_make_paragraph_steps():
    response = "First line\nstill first.\n\nSecond.\n   \nThird.\n\n\n\nFourth."
    assert split_steps(response) == ["First line\nstill first.", "Second.", "Third.", "Fourth."]


def test_windows_line_endings_still_split_on_blank_lines():
    assert split_steps("a\r\nb\r\n\r\nc") == ["a\nb", "c"]


def test_step_markers_without_blank_lines():
    response = "Let us solve it.\nStep 1: add 2 and 3.\nso 5.\n**Step 2:** double it.\nstep 3) answer 10"
    assert split_steps(response) == [
        "Let us solve it.",
        "Step 1: add 2 and 3.\nso 5.",
        "**Step 2:** double it.",
        "step 3) answer 10",
    ]


def test_numbered_list_without_blank_lines():
    response = "Plan:\n1. read the graph\n2) find the slope\n   which is 2\n3. answer"
    assert split_steps(response) == [
        "Plan:",
        "1. read the graph",
        "2) find the slope\n   which is 2",
        "3. answer",
    ]


def test_single_marker_falls_back_to_lines():
    # One "Step 1:" is not a list of steps: every non-empty line is a step.
    assert split_steps("Step 1: x = 2\n  \ty = 3 ") == ["Step 1: x = 2", "y = 3"]


def test_single_lines_fallback_and_empty_input():
    assert split_steps("x = 2\ny = 3\n\t\nz") == ["x = 2\ny = 3", "z"]  # a blank line wins over lines
    assert split_steps("x = 2\ny = 3\nz = 5") == ["x = 2", "y = 3", "z = 5"]
    assert split_steps("just one line") == ["just one line"]
    assert split_steps("  \n\t\n ") == []


def test_merge_to_max_steps_in_chunks_of_ceil_n_over_max():
    pieces = [f"p{i}" for i in range(25)]
    merged = merge_steps(pieces, max_steps=12)
    # ceil(25 / 12) = 3 pieces a step: 9 steps, the last one short.
    assert len(merged) == 9
    assert merged[0] == "p0\n\np1\n\np2" and merged[-1] == "p24"
    assert merge_steps(pieces[:12], max_steps=12) == pieces[:12]
    assert merge_steps(pieces[:13], max_steps=12)[-1] == "p12"
    assert len(merge_steps(pieces[:13], max_steps=12)) == 7
    assert merge_steps(pieces, max_steps=None) == pieces
    assert merge_steps(pieces, max_steps=1) == ["\n\n".join(pieces)]


def test_split_caps_steps_and_keeps_the_joiner_of_the_split():
    paragraphs = "\n\n".join(f"para {i}" for i in range(30))
    steps = split_steps(paragraphs, max_steps=12)
    assert len(steps) == 10 and steps[0] == "para 0\n\npara 1\n\npara 2"
    lines = "\n".join(f"line {i}" for i in range(5))
    assert split_steps(lines, max_steps=2) == ["line 0\nline 1\nline 2", "line 3\nline 4"]
    assert len(split_steps(paragraphs, max_steps=None)) == 30


def test_invalid_max_steps_is_refused():
    with pytest.raises(ValueError):
        merge_steps(["a"], max_steps=0)
    with pytest.raises(ValueError):
        merge_steps([], max_steps=-1)


@pytest.mark.parametrize("max_steps", [None, 12, 3, 1])
def test_split_then_join_gives_the_response_back_on_blank_lines(max_steps):
    response = "We know $x+1=3$.\nSo:\n\n$x = 2$.\n\nThen $2x = 4$.\n\nAnswer: \\boxed{4}\n\nDone."
    steps = split_steps(response, max_steps=max_steps)
    assert join_steps(steps) == response
    assert len(steps) <= (max_steps or 5)
