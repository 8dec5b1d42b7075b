"""The LLM judge: prompt and parser (pure), and the judge job run end to end by a real Celery worker
against a real OpenAI-compatible HTTP server (workers.generation.serve) serving the scripted judge.

The scripted judge (workers.generation.scripted_judge) answers by markers in the texts, so the
expected labels are known exactly, and it can answer malformed JSON, too few or too many verdicts,
an out-of-range label, or HTTP 503 for its first calls.
"""

from __future__ import annotations

import json

import pytest

from annotation.models import AutoLabel, Solution
from prm.core.judge import (
    DEFAULT_JUDGE_PROMPT,
    JudgeReplyError,
    judge_messages,
    parse_judge_reply,
    prompt_version,
    response_format,
)
from tests.conftest import wait_for
from tests.factories import make_solution
from workers.generation.scripted_judge import ScriptedJudge
from workers.generation.serve import OpenAICompatibleServer
from workers.judge_services import judge_job_start
from workers.models import Job

# --- the pure core -------------------------------------------------------------------------------

def test_the_prompt_names_every_step_and_keeps_braces_in_the_texts():
    messages = judge_messages(prompt=DEFAULT_JUDGE_PROMPT, question="Is {x} > 2?", steps=["a {b}", "c"], num_images=2)
    parts = messages[0]["content"]
    assert [p["type"] for p in parts] == ["image", "image", "text"]
    text = parts[-1]["text"]
    assert "Is {x} > 2?" in text and "Step 1: a {b}\n\nStep 2: c" in text and "exactly 2 entries" in text
    assert "{question}" not in text and "{steps}" not in text
    assert prompt_version(DEFAULT_JUDGE_PROMPT) != prompt_version(DEFAULT_JUDGE_PROMPT + " ")
    schema = response_format(3)["json_schema"]["schema"]["properties"]["steps"]
    assert (schema["minItems"], schema["maxItems"], schema["items"]["properties"]["label"]["enum"]) == (3, 3, [-1, 0, 1])


def test_the_parser_takes_exactly_one_verdict_per_step():
    reply = json.dumps({"steps": [{"step": 1, "label": 1, "reason": " Reads  the bar. "}, {"step": 2, "label": "-1", "reason": "Adds wrong."}]})
    verdicts = parse_judge_reply(reply, num_steps=2)
    assert [(v.value, v.reason) for v in verdicts] == [(1, "Reads the bar."), (-1, "Adds wrong.")]
    fenced = parse_judge_reply(f"```json\n{reply}\n```", num_steps=2)
    assert [v.value for v in fenced] == [1, -1]
    assert [v.value for v in parse_judge_reply(f"Here you are: {reply} Hope it helps", num_steps=2)] == [1, -1]


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ('{"steps": [{"step": 1, "label": ', "malformed"),
        ("no json at all", "malformed"),
        ('{"verdicts": 3}', "malformed"),
        ('{"steps": [{"step": 1, "label": 1, "reason": "x"}]}', "step_count"),
        ('{"steps": [{"step": 1, "label": 1}, {"step": 2, "label": 1}, {"step": 3, "label": 0}]}', "step_count"),
        ('{"steps": [{"step": 1, "label": 2, "reason": "x"}, {"step": 2, "label": 1, "reason": "y"}]}', "out_of_range"),
        ('{"steps": [{"step": 1, "label": true}, {"step": 2, "label": 1}]}', "malformed"),
        ('{"steps": [{"step": 2, "label": 1}, {"step": 1, "label": 1}]}', "malformed"),
        ('{"steps": [{"step": 1, "label": "yes"}, {"step": 2, "label": 1}]}', "malformed"),
    ],
)
def test_the_parser_refuses_what_is_not_one_verdict_per_step(reply, kind):
    with pytest.raises(JudgeReplyError) as caught:
        parse_judge_reply(reply, num_steps=2)
    assert caught.value.kind == kind


# --- the job, end to end -------------------------------------------------------------------------

@pytest.fixture
def judge_server():
    judge = ScriptedJudge(failures=1)  # the first request is answered HTTP 503
    server = OpenAICompatibleServer(judge, model="scripted-judge").start()
    server.judge = judge
    yield server
    server.stop()


@pytest.fixture
def listed_judge(judge_server, settings, monkeypatch):
    servers = {"judge": {"base_url": judge_server.base_url, "model": "scripted-judge"}}
    settings.STEPMARK_GENERATION_SERVERS = servers
    monkeypatch.setenv("STEPMARK_GENERATION_SERVERS", json.dumps(servers))
    return servers


def finished(job: Job, timeout: float = 90) -> Job:
    return wait_for(
        lambda: Job.objects.filter(pk=job.pk, status__in=["done", "failed", "cancelled"]).first(),
        timeout=timeout, message=f"job {job.pk}",
    )


def judge_labels(project) -> dict[tuple[str, int], tuple[int, str]]:
    rows = AutoLabel.objects.filter(step__solution__item__project=project, kind="judge").values_list(
        "step__solution__item__external_id", "step__index", "value", "reason"
    )
    return {(external_id, index): (value, reason) for external_id, index, value, reason in rows}


@pytest.mark.django_db(transaction=True)
def test_the_judge_job_stores_labels_that_parse_and_reports_the_skipped(
    judge_server, listed_judge, celery_worker_process, project
):
    make_solution(project, "good", ["Read 2 and 3.", "2 + 3 = 6 [judge:-1]", "So, restating. [judge:0]"])
    make_solution(project, "fenced", ["Read 2 and 3.", "2 + 3 = 5"], question="[judge:fenced] What is 2+3?")
    make_solution(project, "bad-json", ["a", "b"], question="[judge:malformed] What?")
    make_solution(project, "fewer", ["a", "b", "c"], question="[judge:fewer] What?")
    make_solution(project, "more", ["a"], question="[judge:more] What?")
    make_solution(project, "range", ["a", "b"], question="[judge:range] What?")
    job = judge_job_start(project=project, server="judge", solutions_per_chunk=3)
    assert job.chunks.count() == 2 and job.params["prompt_version"] == prompt_version(DEFAULT_JUDGE_PROMPT)
    job = finished(job)
    assert job.status == "done", job.error
    labels = judge_labels(project)
    assert labels == {
        ("good", 0): (1, "Step 1 is correct."),
        ("good", 1): (-1, "Step 2 contains an error."),
        ("good", 2): (0, "Step 3 makes no checkable claim."),
        ("fenced", 0): (1, "Step 1 is correct."),
        ("fenced", 1): (1, "Step 2 is correct."),
    }
    counts = job.counts
    assert (counts["solutions"], counts["steps_labelled"], counts["skipped"]) == (2, 5, 4)
    assert (counts["skipped_malformed"], counts["skipped_step_count"], counts["skipped_out_of_range"]) == (1, 2, 1)
    assert counts["retries"] == 1  # the 503 was retried inside the chunk
    assert counts["prompt_tokens"] > 0 and counts["completion_tokens"] > 0
    named = " | ".join(counts["skipped_solutions"])
    assert "bad-json/m1: the reply is not JSON" in named and "fewer/m1: 2 verdicts for 3 steps" in named
    assert "more/m1: 2 verdicts for 1 steps" in named and "range/m1: label 2 is not -1, 0 or 1" in named
    label = AutoLabel.objects.get(step__solution__item__external_id="good", step__index=1, kind="judge")
    assert (label.source, label.prompt_version, label.score) == ("scripted-judge", job.params["prompt_version"], None)

    # The server was asked for structured output, with the item's image.
    asked = judge_server.judge.requests
    assert len(asked) == 6 and all(r.response_format["type"] == "json_schema" for r in asked)
    assert all(len(r.images) == 1 for r in asked)

    # A rerun with another prompt replaces the labels (one per step and judge), with the new version.
    prompt = "Label each step.\n{question}\n\nSolution:\n{steps}"
    again = finished(judge_job_start(project=project, server="judge", prompt=prompt))
    assert again.status == "done", again.error
    assert AutoLabel.objects.filter(kind="judge").count() == 5
    assert set(AutoLabel.objects.filter(kind="judge").values_list("prompt_version", flat=True)) == {prompt_version(prompt)}
    # Priorities were recomputed: the solution where the judge says wrong with no MC is above 0.
    assert Solution.objects.get(item__external_id="good").priority > 0


@pytest.mark.django_db
def test_a_judge_job_needs_a_listed_server_and_a_usable_prompt(project, listed_judge):
    make_solution(project, "q", ["a"])
    with pytest.raises(ValueError, match="no generation server named 'elsewhere'"):
        judge_job_start(project=project, server="elsewhere")
    with pytest.raises(ValueError, match=r"must contain \{steps\}"):
        judge_job_start(project=project, server="judge", prompt="Judge {question}")
    assert not Job.objects.exists()
