"""A deterministic LLM judge for tests and throughput measurements: no model, answers by markers.

Served by workers.generation.serve (`python -m workers.generation.serve --scripted-judge`), it
reads the judge prompt (prm.core.judge's "Step N: ..." lines) and answers one verdict per step:

- a step whose text holds `[judge:-1]`, `[judge:0]` or `[judge:1]` gets that label, any other +1;
- a question holding `[judge:malformed]` gets a reply that is not JSON, `[judge:fewer]` one verdict
  too few, `[judge:more]` one too many, `[judge:range]` a label 2, `[judge:fenced]` valid JSON in a
  Markdown code fence (as models without guided decoding answer);
- the first `failures` calls fail as an overloaded server (HTTP 503 from the server).

The number of steps comes from the request's response_format (minItems) when it has one.
"""

from __future__ import annotations

import json
import re
import threading
import time

from workers.errors import TransientJobError
from workers.generation.base import Completion, GenerationBackend, GenerationRequest

STEP_LINE = re.compile(r"^Step (\d+): (.*?)(?=\n\nStep \d+: |\Z)", re.DOTALL | re.MULTILINE)
LABEL_MARKER = re.compile(r"\[judge:(-1|0|1)\]")
WORDS = {1: "is correct", 0: "makes no checkable claim", -1: "contains an error"}


def _text(request: GenerationRequest) -> str:
    return "\n".join(
        part["text"] for message in request.messages for part in message["content"] if part.get("type") == "text"
    )


def scripted_reply(request: GenerationRequest) -> str:
    text = _text(request)
    steps = [body for _, body in STEP_LINE.findall(text.rsplit("\nSolution:\n", 1)[-1])]
    schema = ((request.response_format or {}).get("json_schema") or {}).get("schema") or {}
    wanted = (schema.get("properties", {}).get("steps") or {}).get("minItems")
    if isinstance(wanted, int):
        steps = (steps + [""] * wanted)[:wanted]
    verdicts = []
    for number, body in enumerate(steps, start=1):
        marker = LABEL_MARKER.search(body)
        label = int(marker.group(1)) if marker else 1
        verdicts.append({"step": number, "label": label, "reason": f"Step {number} {WORDS[label]}."})
    if "[judge:malformed]" in text:
        return 'Sure! Here are my verdicts: {"steps": [{"step": 1, "label": '
    if "[judge:fewer]" in text:
        verdicts = verdicts[:-1]
    if "[judge:more]" in text:
        verdicts.append({"step": len(verdicts) + 1, "label": 1, "reason": "An extra step."})
    if "[judge:range]" in text and verdicts:
        verdicts[0]["label"] = 2
    reply = json.dumps({"steps": verdicts})
    if "[judge:fenced]" in text:
        return f"```json\n{reply}\n```"
    return reply


class ScriptedJudge(GenerationBackend):
    name = "scripted-judge"

    def __init__(self, *, failures: int = 0, delay: float = 0.0):
        self.failures = failures
        self.delay = delay
        self.requests: list[GenerationRequest] = []
        self.calls = 0
        self.lock = threading.Lock()

    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.calls += 1
            if self.failures:
                self.failures -= 1
                raise TransientJobError("the judge is overloaded")
            self.requests.extend(requests)
        return [[Completion(scripted_reply(request)) for _ in range(request.n)] for request in requests]
