"""An LLM judge's step verdicts: the prompt, the structured-output schema and the reply parser (pure).

A judge is any chat model with image input (GPT-4o, Gemini, a `vllm serve`d Qwen2.5-VL...). It sees
the item's images, the question and the solution's numbered steps, and answers one verdict per
step: +1 correct, 0 neutral, -1 incorrect, each with a one-sentence reason. The default prompt
follows VisualProcessBench's labels: every step is judged on its own, so a step that is right
given what came before is not marked wrong for an earlier step's error.

The reply is parsed defensively: anything but exactly one in-range verdict per step, in order,
raises JudgeReplyError (its `kind` says why), so a solution is either labelled whole or skipped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

JUDGE_VALUES = (-1, 0, 1)
MAX_REASON_CHARS = 500

DEFAULT_JUDGE_PROMPT = """You are checking a student's solution to a visual reasoning problem, step by step. The image(s) and the question come first, then the solution split into {num_steps} numbered steps.

Label every step on its own:
- 1 (correct): what the step states is right: the facts read from the image, the calculation and the logic.
- 0 (neutral): the step is neither right nor wrong: it restates the question, plans, or makes no checkable claim.
- -1 (incorrect): the step contains an error: a misread image, a wrong fact, a calculation or logic mistake.

Judge each step by itself. Do not mark a step incorrect only because an earlier step was wrong: if it reasons correctly from what came before, it is correct.

For every step give one sentence saying why. Answer with JSON only, in this shape, with exactly {num_steps} entries in step order:
{"steps": [{"step": 1, "label": 1, "reason": "..."}, ...]}

Question:
{question}

Solution:
{steps}"""

PLACEHOLDERS = ("{question}", "{steps}", "{num_steps}")


class JudgeReplyError(ValueError):
    """A reply that is not exactly one verdict per step. `kind`: malformed, step_count or out_of_range."""

    KINDS = ("malformed", "step_count", "out_of_range")

    def __init__(self, kind: str, message: str):
        assert kind in self.KINDS
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class StepVerdict:
    value: int  # +1 / 0 / -1
    reason: str


def prompt_version(prompt: str) -> str:
    """A short hash of the prompt text: labels record it, so two prompts' labels never mix."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:12]


def prompt_problems(prompt: str) -> list[str]:
    """What is wrong with a custom prompt (it must show the question and the steps)."""
    problems = []
    for placeholder in ("{question}", "{steps}"):
        if placeholder not in prompt:
            problems.append(f"the prompt must contain {placeholder}")
    return problems


def format_steps(steps: Sequence[str]) -> str:
    return "\n\n".join(f"Step {number}: {text.strip()}" for number, text in enumerate(steps, start=1))


def judge_text(*, prompt: str, question: str, steps: Sequence[str]) -> str:
    """The prompt with its placeholders filled (plain replacement: braces in the texts are kept)."""
    filled = prompt.replace("{num_steps}", str(len(steps))).replace("{question}", question.strip())
    return filled.replace("{steps}", format_steps(steps))


def judge_messages(*, prompt: str, question: str, steps: Sequence[str], num_images: int) -> list[dict]:
    """One user turn in the neutral chat format: an image part per image, then the filled prompt."""
    parts = [{"type": "image"} for _ in range(num_images)]
    parts.append({"type": "text", "text": judge_text(prompt=prompt, question=question, steps=steps)})
    return [{"role": "user", "content": parts}]


def response_format(num_steps: int) -> dict:
    """OpenAI's `response_format` asking for exactly `num_steps` verdicts (vLLM: guided decoding)."""
    verdict = {
        "type": "object",
        "properties": {
            "step": {"type": "integer"},
            "label": {"type": "integer", "enum": list(JUDGE_VALUES)},
            "reason": {"type": "string"},
        },
        "required": ["step", "label", "reason"],
        "additionalProperties": False,
    }
    schema = {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": verdict, "minItems": num_steps, "maxItems": num_steps}},
        "required": ["steps"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "step_verdicts", "strict": True, "schema": schema}}


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _loads(text: str):
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    # A model without guided decoding may wrap the object in prose: try the outermost braces.
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            return json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            pass
    raise JudgeReplyError("malformed", f"the reply is not JSON: {text[:80]!r}")


def _value(raw) -> int:
    if isinstance(raw, bool):
        raise JudgeReplyError("malformed", f"label {raw!r} is not a number")
    if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
        raw = int(raw)
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if not isinstance(raw, int):
        raise JudgeReplyError("malformed", f"label {raw!r} is not a number")
    if raw not in JUDGE_VALUES:
        raise JudgeReplyError("out_of_range", f"label {raw} is not -1, 0 or 1")
    return raw


def parse_judge_reply(text: str, *, num_steps: int) -> list[StepVerdict]:
    """Exactly `num_steps` verdicts from a reply {"steps": [{"step", "label", "reason"}, ...]} (or a bare list).

    Raises JudgeReplyError: malformed (not JSON, wrong shape, a step number out of order),
    step_count (too few or too many verdicts), out_of_range (a label not in -1, 0, 1).
    """
    data = _loads(text)
    entries = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise JudgeReplyError("malformed", "the reply has no list of steps")
    if len(entries) != num_steps:
        raise JudgeReplyError("step_count", f"{len(entries)} verdicts for {num_steps} steps")
    verdicts = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "label" not in entry:
            raise JudgeReplyError("malformed", f"verdict {number} has no label")
        if "step" in entry and entry["step"] != number and str(entry["step"]).strip() != str(number):
            raise JudgeReplyError("malformed", f"verdict {number} names step {entry['step']!r}")
        reason = entry.get("reason", "")
        if not isinstance(reason, str):
            raise JudgeReplyError("malformed", f"verdict {number}: the reason is not text")
        verdicts.append(StepVerdict(value=_value(entry["label"]), reason=" ".join(reason.split())[:MAX_REASON_CHARS]))
    return verdicts
