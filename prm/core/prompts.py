"""The VisualPRM conversation texts, shared by the PRM, the importers and the exporters."""

PRM_SYSTEM_PROMPT = (
    "You are an advanced AI assistant, designed to serve as a process supervision model. "
    "In this task, I will provide a problem statement followed by the first step of the solution process. "
    "For each subsequent turn, I will give you a new step in the solution. "
    "Your job is to analyze each step and determine its correctness. "
    'If the solution is correct up to this step, reply "+". If you find any issue, reply "-".'
)

FIRST_TURN_TEMPLATE = "### Question:\n{question}\n\n### Solution Process:\n{step}"
FIRST_TURN_PREFIX = "### Question:\n"
FIRST_TURN_SEPARATOR = "\n\n### Solution Process:\n"

POSITIVE_TOKEN = "+"
NEGATIVE_TOKEN = "-"


def first_turn(question: str, first_step: str) -> str:
    return FIRST_TURN_TEMPLATE.format(question=question, step=first_step)
