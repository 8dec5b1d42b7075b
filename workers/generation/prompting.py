"""The policy prompt: steps separated by blank lines (how solutions are split into steps) and a
final \\boxed{} answer (how answers are judged)."""

from __future__ import annotations

from collections.abc import Sequence

SOLUTION_INSTRUCTION = (
    "Solve the problem step by step. Separate consecutive steps with a blank line. "
    "End with the final answer in the form \\boxed{answer}"
)


def question_text(question: str, options: Sequence[str] = ()) -> str:
    """The question with its options (letters A, B, ...) unless the question already lists them."""
    text = question.strip()
    if options and not all(str(option) in text for option in options):
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        listed = "\n".join(f"{letters[i]}. {option}" for i, option in enumerate(options))
        text = f"{text}\nOptions:\n{listed}"
    return text


def solution_messages(*, question: str, options: Sequence[str] = (), num_images: int = 0) -> list[dict]:
    instruction = SOLUTION_INSTRUCTION + (" (the option's letter)." if options else ".")
    return [
        {
            "role": "user",
            "content": [{"type": "image"} for _ in range(num_images)]
            + [{"type": "text", "text": f"{question_text(question, options)}\n\n{instruction}"}],
        }
    ]
