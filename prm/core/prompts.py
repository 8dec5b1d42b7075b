"""The VisualPRM conversation texts and the policy prompt, shared by the PRM, the policy back ends,
the importers and the exporters.

As the released pipeline (InternVL, tools/reasoning_data_pipeline), the PRM sees the policy's own
prompt (question and instruction) after "### Question:", with the images right after that heading
(`### Question:\\n<image>\\n{prompt}\\n\\n### Solution Process:\\n{step}`), under the released
PRM_SYSTEM_PROMPT. Stepmark's shorter system prompt and the bare question stay available as options;
both choices are recorded with every training run (TrainConfig) and read back by the scorer.
"""

from __future__ import annotations

from collections.abc import Sequence

# The released pipeline's PRM system prompt (utils/constants.py), verbatim.
PRM_SYSTEM_PROMPT = """You are an advanced AI assistant, designed to serve as a process supervision model. In this task, I will provide a problem statement followed by the first step of the solution process. For each subsequent turn, I will give you a new step in the solution. Your role is to assess whether the solution process is correct up to the current step.

- In the **first round**, I will input the problem and the first step of the solution process.
- In **each subsequent round**, I will provide the next step in the solution.

For each step, you should:

- Respond with **"+"** if you believe the solution process is correct up to this step.
- Respond with **"-"** if you detect any issues or errors in the process up to this step.

Please note:
- Only respond with **"+"** or **"-"**. Do not provide any additional explanations, comments, or justifications.

Your task is to verify the accuracy and correctness of each step in the given solution process."""

# Stepmark's earlier, shorter text: an option for PRMs trained with it.
STEPMARK_SYSTEM_PROMPT = (
    "You are an advanced AI assistant, designed to serve as a process supervision model. "
    "In this task, I will provide a problem statement followed by the first step of the solution process. "
    "For each subsequent turn, I will give you a new step in the solution. "
    "Your job is to analyze each step and determine its correctness. "
    'If the solution is correct up to this step, reply "+". If you find any issue, reply "-".'
)

# The released writer's prompt under the name the importers use to recognise it (the same text).
VISUALPRM_SYSTEM_PROMPT = PRM_SYSTEM_PROMPT

SYSTEM_PROMPTS = {"visualprm": PRM_SYSTEM_PROMPT, "stepmark": STEPMARK_SYSTEM_PROMPT}
DEFAULT_SYSTEM_PROMPT = "visualprm"

FIRST_TURN_TEMPLATE = "### Question:\n{question}\n\n### Solution Process:\n{step}"
FIRST_TURN_PREFIX = "### Question:\n"
FIRST_TURN_SEPARATOR = "\n\n### Solution Process:\n"
IMAGE_PLACEHOLDER = "<image>"

POSITIVE_TOKEN = "+"
NEGATIVE_TOKEN = "-"

# --------------------------------------------------------------------------- the policy prompt

SOLUTION_INSTRUCTION = (
    "Solve the problem step by step. Separate consecutive steps with a blank line. "
    "End with the final answer in the form \\boxed{answer}"
)

# What the PRM reads after "### Question:": the policy's prompt (the reference) or the bare question.
QUESTION_FORMATS = ("policy_prompt", "question")
DEFAULT_QUESTION_FORMAT = "policy_prompt"


def question_text(question: str, options: Sequence[str] = ()) -> str:
    """The question with its options (letters A, B, ...) unless the question already lists them."""
    text = question.strip()
    if options and not all(str(option) in text for option in options):
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        listed = "\n".join(f"{letters[i]}. {option}" for i, option in enumerate(options))
        text = f"{text}\nOptions:\n{listed}"
    return text


def policy_prompt(question: str, options: Sequence[str] = ()) -> str:
    """The text the policy is asked: the question, its options and the step-by-step instruction."""
    text = question_text(question, options)
    if SOLUTION_INSTRUCTION in text:  # already a policy prompt (e.g. imported with its instruction)
        return text
    instruction = SOLUTION_INSTRUCTION + (" (the option's letter)." if options else ".")
    return f"{text}\n\n{instruction}"


def prm_question(question: str, *, options: Sequence[str] = (), question_format: str = DEFAULT_QUESTION_FORMAT) -> str:
    if question_format == "policy_prompt":
        return policy_prompt(question, options)
    if question_format == "question":
        return question_text(question, options)
    raise ValueError(f"unknown question format {question_format!r}; known: {', '.join(QUESTION_FORMATS)}")


def system_prompt_text(name: str) -> str:
    try:
        return SYSTEM_PROMPTS[name]
    except KeyError:
        raise ValueError(f"unknown system prompt {name!r}; known: {', '.join(SYSTEM_PROMPTS)}") from None


# --------------------------------------------------------------------------- the first turn


def first_turn(question: str, first_step: str) -> str:
    return FIRST_TURN_TEMPLATE.format(question=question, step=first_step)


def first_turn_content(question: str, first_step: str, *, num_images: int) -> list[dict]:
    """The first user turn as chat content parts, the images right after "### Question:\\n" and
    followed by a line break, where the released pipeline puts `<image>\\n`."""
    if not num_images:
        return [{"type": "text", "text": first_turn(question, first_step)}]
    return [
        {"type": "text", "text": FIRST_TURN_PREFIX},
        *({"type": "image"} for _ in range(num_images)),
        {"type": "text", "text": "\n" + question + FIRST_TURN_SEPARATOR + first_step},
    ]
