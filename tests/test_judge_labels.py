"""Judge labels where the other machine labels are: merge policy, exports, queue priority, the
benchmark report (command and page), the jobs-page form and its ownership rules."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from annotation.models import AutoLabel, GoldLabel, Project, Role, Solution, Step
from annotation.selectors import ExportFilters, export_records
from prm.core.merge import MergePolicy, merged_label, solution_labels
from prm.training_data import training_set_build
from tests.factories import add_member, make_solution
from workers.models import Job
from workers.priority import solution_priority_update

SERVERS = {"judge": {"base_url": "http://judge.example:8000/v1", "model": "Qwen/Qwen2.5-VL-72B-Instruct"}}


# --- the merge policy (pure) ---------------------------------------------------------------------

def test_the_judge_is_a_source_after_mc_or_before_it():
    after = MergePolicy(use_judge=True)
    assert merged_label(gold=None, human=None, machine=-1, judge=1, policy=after).source == "machine"
    assert (merged_label(gold=None, human=None, machine=None, judge=1, policy=after).value, "judge") == (1, "judge")
    first = MergePolicy(use_judge=True, judge_first=True)
    label = merged_label(gold=None, human=None, machine=-1, judge=1, policy=first)
    assert (label.value, label.source) == (1, "judge")
    assert merged_label(gold=None, human=-1, machine=None, judge=1, policy=first).source == "human"
    # Off by default: a policy recorded before judges existed resolves as before.
    assert merged_label(gold=None, human=None, machine=None, judge=1, policy=MergePolicy()).source is None
    assert MergePolicy.from_dict(first.to_dict()) == first


def test_the_mc_judge_consensus_keeps_a_machine_step_only_where_both_agree():
    policy = MergePolicy(mc_judge_consensus=True)
    labels = solution_labels(
        gold=[None, None, None, 1], human=[None, None, None, None], mc_scores=[0.75, 0.75, 0.5, 0.0],
        imported=[None] * 4, judge=[1, -1, None, -1], policy=policy,
    )
    # Agree: kept; disagree: dropped; no judge: dropped; gold stays whatever the machines say.
    assert [(label.value, label.source) for label in labels] == [(1, "machine"), (None, None), (None, None), (1, "gold")]
    # Neutral judge verdicts compare through the neutral policy: "positive" reads 0 as "+".
    assert merged_label(gold=None, human=None, machine=1, judge=0, policy=policy).value == 1
    strict = MergePolicy(mc_judge_consensus=True, neutral="negative")
    assert merged_label(gold=None, human=None, machine=1, judge=0, policy=strict).value is None


# --- exports and training data -------------------------------------------------------------------

def _judged(project: Project) -> Solution:
    solution = make_solution(project, "q1", ["read", "add", "answer"])
    steps = list(Step.objects.filter(solution=solution).order_by("index"))
    for step, mc, verdict in zip(steps, (1.0, 0.5, 0.0), (1, -1, -1), strict=True):
        AutoLabel.objects.create(step=step, kind="mc", source="policy", score=mc, num_correct=int(4 * mc), num_total=4, estimate="exhaustive")
        AutoLabel.objects.create(step=step, kind="judge", source="judge-a", value=verdict, reason=f"r{step.index}", prompt_version="abc")
    AutoLabel.objects.create(step=steps[0], kind="judge", source="judge-b", value=0, reason="other", prompt_version="def")
    return solution


@pytest.mark.django_db
def test_exports_take_judge_labels_and_the_merged_consensus(project, tmp_path):
    _judged(project)

    def labels(**filters):
        (record,) = export_records(project=project, filters=ExportFilters(**filters))
        return [step.label for step in record.steps]

    assert labels(label_source="judge", judge_source="judge-a") == [1, -1, -1]
    assert labels(label_source="judge") == [0, -1, -1]  # each step's newest judge label
    assert labels(label_source="merged") == [1, 1, -1]  # MC value labels alone
    assert labels(label_source="merged", mc_judge_consensus=True, judge_source="judge-a") == [1, None, -1]

    out = tmp_path / "judge.jsonl"
    call_command("export_dataset", "--project", project.name, "--format", "visualprocessbench", "--out", str(out),
                 "--label-source", "judge", "--judge-source", "judge-a")
    (line,) = [json.loads(text) for text in out.read_text().splitlines()]
    assert line["response"]["process_correctness"] == [1, -1, -1]
    out = tmp_path / "consensus.jsonl"
    call_command("export_dataset", "--project", project.name, "--format", "visualprocessbench", "--out", str(out),
                 "--mc-judge-consensus", "--judge-source", "judge-a")
    assert out.read_text() == ""  # step 2 lost its label: an incomplete solution is not a VPB record


@pytest.mark.django_db
def test_training_labels_follow_the_judge_policy(project):
    _judged(project)
    policy = MergePolicy(mc_judge_consensus=True, judge_source="judge-a", validation_fraction=0.0)
    (example,) = training_set_build(project=project, policy=policy).train
    assert (example.labels, example.sources) == ([True, None, False], ["machine", None, "machine"])
    first = MergePolicy(use_judge=True, judge_first=True, judge_source="judge-a", validation_fraction=0.0)
    (example,) = training_set_build(project=project, policy=first).train
    assert (example.labels, example.sources) == ([True, False, False], ["judge", "judge", "judge"])


# --- the queue -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_solutions_where_the_judge_and_mc_disagree_come_first(project):
    agree = make_solution(project, "agree", ["a", "b"])
    disagree = make_solution(project, "disagree", ["a", "b"])
    unsure = make_solution(project, "unsure", ["a", "b"])
    for solution, verdicts in ((agree, (1, 1)), (disagree, (1, 1)), (unsure, (None, None))):
        for step, verdict, (right, total) in zip(solution.steps.order_by("index"), verdicts, ((4, 4), (0, 4) if solution == disagree else (4, 4)), strict=True):
            AutoLabel.objects.create(step=step, kind="mc", source="p", score=right / total, num_correct=right, num_total=total, estimate="exhaustive")
            if verdict is not None:
                AutoLabel.objects.create(step=step, kind="judge", source="j", value=verdict)
    # Make the unsure one as doubtful as MC alone can: two samples, one right.
    AutoLabel.objects.filter(step__solution=unsure).update(score=0.5, num_correct=1, num_total=2)
    priority = solution_priority_update(solution_ids=[agree.pk, disagree.pk, unsure.pk])
    assert priority[disagree.pk] > 2 >= priority[unsure.pk] > priority[agree.pk]
    # A neutral verdict contradicts nothing.
    AutoLabel.objects.filter(step__solution=disagree, kind="judge").update(value=0)
    assert solution_priority_update(solution_ids=[disagree.pk])[disagree.pk] < 2


# --- the benchmark report ------------------------------------------------------------------------

def _benchmark(project: Project) -> None:
    """Two sources; the judge is right on 5 of 6 gold steps; one solution it never labelled."""
    rows = [("geo", [1, -1, 1], [1, -1, 1]), ("chart", [1, 1, -1], [1, -1, -1]), ("chart", [1, 1], None)]
    for n, (source, gold, judge) in enumerate(rows):
        solution = make_solution(project, f"b{n}", [f"s{i}" for i in range(len(gold))])
        solution.item.data_source = source
        solution.item.save()
        for step, g in zip(solution.steps.order_by("index"), gold, strict=True):
            GoldLabel.objects.create(step=step, value=g, source="imported", origin="VisualProcessBench")
        for step, j in zip(solution.steps.order_by("index"), judge, strict=True) if judge else ():
            AutoLabel.objects.create(step=step, kind="judge", source="judge-a", value=j, prompt_version="abc")


@pytest.mark.django_db
def test_evaluate_prm_scores_judge_labels_like_a_prm(project, tmp_path, capsys):
    _benchmark(project)
    out = tmp_path / "judge.json"
    call_command("evaluate_prm", "--project", project.name, "--judge-labels", "--out", str(out), "--resamples", "50")
    report = json.loads(out.read_text())
    assert report["judge"] == {"source": "judge-a", "prompt_versions": ["abc"]}
    assert (report["num_solutions"], report["num_scored_solutions"], report["unjudged"]["count"]) == (3, 2, 1)
    assert report["overall"]["num_steps"] == 6
    assert report["per_source"]["geo"]["macro_f1"] == 1.0
    # chart: gold [+, +, -] vs judge [+, -, -]: F1 correct 2/3, F1 incorrect 2/3.
    assert report["per_source"]["chart"]["macro_f1"] == pytest.approx(2 / 3)
    assert "judge judge-a: 2 solutions scored, 1 not labelled in full" in capsys.readouterr().out
    with pytest.raises(Exception, match="no labels of judge 'nobody'"):
        call_command("evaluate_prm", "--project", project.name, "--judge-labels", "nobody", "--out", str(out))


@pytest.mark.django_db
def test_the_benchmark_page_shows_a_judges_report_to_admins_only(project, make_user, client):
    _benchmark(project)
    admin = make_user("boss")
    add_member(project, admin, Role.ADMIN)
    client.login(username="boss", password="pw-boss")
    page = client.get(f"/projects/{project.id}/prm/benchmark/").content.decode()
    assert 'option value="judge-a"' in page and 'id="judge-sources"' not in page
    page = client.get(f"/projects/{project.id}/prm/benchmark/", {"judge": "judge-a"}).content.decode()
    assert 'id="judge-sources"' in page and "<strong>Judge judge-a</strong>" in page and 'id="judge-unjudged"' in page
    assert '<tr data-source="geo"><td>geo</td><td>100.0</td>' in page
    reviewer = make_user("rev")
    add_member(project, reviewer, Role.REVIEWER)
    client.login(username="rev", password="pw-rev")
    assert client.get(f"/projects/{project.id}/prm/benchmark/", {"judge": "judge-a"}).status_code == 403


# --- the jobs-page form --------------------------------------------------------------------------

@pytest.fixture
def judge_servers(settings, monkeypatch):
    settings.STEPMARK_GENERATION_SERVERS = SERVERS
    monkeypatch.setenv("STEPMARK_GENERATION_SERVERS", json.dumps(SERVERS))


def _post(client, project, data):
    return client.post(f"/projects/{project.id}/jobs/judge/", {f"judge-{key}": value for key, value in data.items()})


PROMPT = "Judge each step.\n{question}\n\nSolution:\n{steps}"


@pytest.mark.django_db(transaction=True)
def test_the_judge_form_starts_a_job_and_keeps_the_prompt(judge_servers, project, make_user, client):
    make_solution(project, "a1", ["x", "y"])
    make_solution(project, "a2", ["x"])
    add_member(project, make_user("boss"), Role.ADMIN)
    client.login(username="boss", password="pw-boss")
    page = client.get(f"/projects/{project.id}/jobs/").content.decode()
    assert 'value="judge"' in page and "later steps" not in page and "Judge each step by itself" in page
    bad = _post(client, project, {"server": "judge", "selection": "all", "prompt": "No placeholders", "temperature": "0", "max_tokens": "512"})
    assert bad.status_code == 400 and "The prompt must contain {question}" in bad.content.decode()
    assert not Job.objects.exists()
    response = _post(client, project, {
        "server": "judge", "selection": "external_ids", "external_ids": "a2", "prompt": PROMPT,
        "save_prompt": "on", "temperature": "0.2", "max_tokens": "512",
    })
    assert response.status_code == 302
    job = Job.objects.get(kind="judge")
    assert (job.params["server"], job.params["source"], job.params["prompt"]) == ("judge", "Qwen2.5-VL-72B-Instruct", PROMPT)
    assert (job.params["temperature"], job.params["max_tokens"], job.progress_total) == (0.2, 512, 1)
    project.refresh_from_db()
    assert project.judge_prompt == PROMPT
    assert PROMPT.split("\n")[0] in client.get(f"/projects/{project.id}/jobs/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_judge_form_refuses_everyone_but_admins(judge_servers, project, make_user, client):
    make_solution(project, "a1", ["x"])
    other = Project.objects.create(name="other")
    add_member(other, make_user("elsewhere"), Role.ADMIN)
    make_user("stranger")
    add_member(project, make_user("member"), Role.ANNOTATOR)
    add_member(project, make_user("rev"), Role.REVIEWER)
    valid = {"server": "judge", "selection": "all", "prompt": PROMPT, "save_prompt": "on", "temperature": "0", "max_tokens": "64"}
    assert _post(client, project, valid).status_code == 302  # anonymous: to the login page
    for username, status in (("stranger", 404), ("elsewhere", 404), ("member", 403), ("rev", 403)):
        client.login(username=username, password="pw-" + username)
        assert _post(client, project, valid).status_code == status, username
        assert client.get(f"/projects/{project.id}/jobs/").status_code == status
    assert not Job.objects.exists()
    project.refresh_from_db()
    assert project.judge_prompt == ""
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    client.login(username="staff", password="pw-staff")
    assert _post(client, project, valid).status_code == 302 and Job.objects.filter(kind="judge").count() == 1
