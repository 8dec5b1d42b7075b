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


# The system prompt of OpenGVLab's released VisualPRM400K writer (InternVL,
# tools/reasoning_data_pipeline/utils/constants.py), so imported records are recognised and
# written back without storing a copy in each solution.
VISUALPRM_SYSTEM_PROMPT = """
You are an advanced AI assistant, designed to serve as a process supervision model. In this task, I will provide a problem statement followed by the first step of the solution process. For each subsequent turn, I will give you a new step in the solution. Your role is to assess whether the solution process is correct up to the current step.

- In the **first round**, I will input the problem and the first step of the solution process.
- In **each subsequent round**, I will provide the next step in the solution.

For each step, you should:

- Respond with **"+"** if you believe the solution process is correct up to this step.
- Respond with **"-"** if you detect any issues or errors in the process up to this step.

Please note:
- Only respond with **"+"** or **"-"**. Do not provide any additional explanations, comments, or justifications.

Your task is to verify the accuracy and correctness of each step in the given solution process.
""".strip()
