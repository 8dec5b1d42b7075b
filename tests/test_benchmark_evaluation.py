"""evaluate_prm and the benchmark page: a tiny Qwen2-VL scored on a whole imported VisualProcessBench project,
every original step, per data source and pooled, with the too-long solution reported, not cut."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.models import Project, Role
from annotation.services.dataset_import import dataset_import
from prm.benchmark import PAPER_MACRO_F1, benchmark_items
from prm.core.conversation import encode_conversation
from prm.core.metrics import binary_macro_f1
from prm.core.scoring import PRMScorer
from prm.core.tiny_models import build_tiny_backbone
from prm.evaluation import item_images
from prm.models import Evaluation, PRMVersion
from tests.factories import add_member
from tests.test_format_visualprocessbench import IMAGES, RECORDS, vpb_record, write_vpb

pytestmark = pytest.mark.django_db

LONG = vpb_record(["images/WeMath/3.png"], "Count the sides.", [f"Side {i} is straight." for i in range(30)],
                  [1] * 29 + [-1], data_source="WeMath")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return build_tiny_backbone("qwen2_vl", tmp_path_factory.mktemp("backbone"), seed=0)


@pytest.fixture
def bench(tmp_path):
    project = Project.objects.create(name="VisualProcessBench")
    path = write_vpb(tmp_path / "vpb", [*RECORDS, LONG], IMAGES)
    dataset_import(project=project, format_name="visualprocessbench", path=path)
    return project


def lengths_and_scores(project, scorer):
    """Token length and (alone-scored) step scores of every solution, by solution key and steps."""
    result = {}
    for item in benchmark_items(project=project):
        images = item_images(item.image_files)
        for s in item.solutions:
            tokens = len(encode_conversation(scorer.processor, question=item.question, steps=s.steps, images=images).input_ids)
            result[tuple(s.steps)] = (tokens, s.gold, item.data_source,
                                      scorer.score_steps(question=item.question, steps=s.steps, images=images))
    return result


def test_evaluate_prm_reports_every_step_and_the_too_long(bench, backbone, tmp_path):
    scorer = PRMScorer(backbone)
    solutions = lengths_and_scores(bench, scorer)
    long_tokens = solutions[tuple(LONG["response"]["steps"])][0]
    limit = long_tokens - 1
    assert all(tokens <= limit for steps, (tokens, *_) in solutions.items() if len(steps) < 30)

    out = tmp_path / "report.json"
    call_command("evaluate_prm", "--project", bench.name, "--model", str(backbone), "--out", str(out),
                 "--max-tokens", str(limit), "--resamples", "200")
    report = json.loads(out.read_text())

    assert report["too_long"]["count"] == 1
    (cut,) = report["too_long"]["solutions"]
    assert (cut["steps"], cut["tokens"], report["too_long"]["context_length"]) == (30, long_tokens, limit)
    # Every original step with gold +1/-1 of the scored solutions: 3 + 3 + 2 + 2 + 1 (neutral left out).
    overall = report["overall"]
    assert overall["num_steps"] == 11 and report["num_scored_solutions"] == 5 and report["num_solutions"] == 6
    assert {k: v["num_steps"] for k, v in report["per_source"].items()} == {"DynaMath": 2, "MathVerse": 8, "WeMath": 1}
    for block in [overall, *report["per_source"].values()]:
        assert set(block) >= {"macro_f1", "f1_correct", "f1_incorrect", "num_steps", "auroc", "macro_f1_ci95", "best"}
        low, high = block["macro_f1_ci95"]
        assert 0 <= low <= high <= 1
    # The same figure by hand, from each solution scored alone.
    gold, predicted = [], []
    for steps, (_, step_gold, _, scores) in solutions.items():
        if len(steps) == 30:
            continue
        for g, score in zip(step_gold, scores, strict=True):
            if g in (1, -1):
                gold.append(g == 1)
                predicted.append(score > 0.5)
    macro, f1_correct, f1_incorrect = binary_macro_f1(gold, predicted)
    assert overall["macro_f1"] == pytest.approx(macro)
    assert (overall["f1_correct"], overall["f1_incorrect"]) == (pytest.approx(f1_correct), pytest.approx(f1_incorrect))
    assert report["reference_macro_f1_percent"] == PAPER_MACRO_F1


def test_evaluate_prm_bad_input(bench, tmp_path):
    with pytest.raises(CommandError, match="no project named 'nope'"):
        call_command("evaluate_prm", "--project", "nope", "--model", str(tmp_path), "--out", str(tmp_path / "r.json"))
    with pytest.raises(CommandError, match="does not exist"):
        call_command("evaluate_prm", "--project", bench.name, "--model", str(tmp_path / "missing"),
                     "--out", str(tmp_path / "r.json"))
    with pytest.raises(CommandError, match="no PRM version with id 999999"):
        call_command("evaluate_prm", "--project", bench.name, "--version", "999999", "--out", str(tmp_path / "r.json"))


def test_benchmark_page_beside_the_paper(bench, backbone, tmp_path, client, make_user):
    trained = Project.objects.create(name="training project")
    version = PRMVersion.objects.create(project=trained, name="prm-v1", backbone=str(backbone), directory=str(backbone))
    call_command("evaluate_prm", "--project", bench.name, "--version", str(version.pk), "--out", str(tmp_path / "r.json"),
                 "--resamples", "50")
    evaluation = Evaluation.objects.get(version=version)
    ours = round(100 * evaluation.metrics["overall"]["macro_f1"], 1)

    admin, member, outsider = make_user("boss"), make_user("annotator"), make_user("stranger")
    add_member(bench, admin, Role.ADMIN)
    add_member(trained, admin, Role.ADMIN)
    add_member(bench, member, Role.ANNOTATOR)
    url = f"/projects/{bench.pk}/prm/benchmark/"
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.force_login(member)
    assert client.get(url).status_code == 403
    client.force_login(admin)
    page = client.get(url).content.decode()
    for name, value in PAPER_MACRO_F1.items():
        assert name in page and f"{value:.1f}" in page
    assert "This PRM (prm-v1)" in page and f"{ours:.1f}" in page
    assert 'data-source="DynaMath"' in page and 'data-source="All sources"' in page
    assert f'<option value="{version.pk}">' in page

    response = client.post(f"/projects/{bench.pk}/prm/benchmark/start/", {"version_id": version.pk})
    assert response.status_code == 302
    from workers.models import Job

    job = Job.objects.get(kind=Job.Kind.EVALUATE, project=bench)
    assert job.params == {"version_id": version.pk, "benchmark_project_id": bench.pk}
    other = PRMVersion.objects.create(project=Project.objects.create(name="not mine"), name="x", backbone="b", directory="d")
    client.post(f"/projects/{bench.pk}/prm/benchmark/start/", {"version_id": other.pk})
    assert client.post(f"/projects/{bench.pk}/prm/benchmark/start/", {"version_id": "abc"}).status_code == 302
    assert Job.objects.filter(kind=Job.Kind.EVALUATE).count() == 1  # a version of a project not administered


@pytest.mark.django_db(transaction=True)
def test_benchmark_page_in_the_browser(page, make_user):
    from prm.benchmark import benchmark_record
    from prm.core.metrics import ScoredSolution, processbench_f1, step_benchmark_report
    from prm.evaluation import first_error_summary
    from tests.conftest import log_in, screenshot

    bench = Project.objects.create(name="VisualProcessBench")
    version = PRMVersion.objects.create(project=bench, name="prm-v2", backbone="b", directory="d")
    solutions = [
        ScoredSolution(gold=[1, 1, -1, 0], scores=[0.9, 0.4, 0.3, 0.8], data_source="MathVerse"),
        ScoredSolution(gold=[1, -1, -1], scores=[0.7, 0.6, 0.55], data_source="DynaMath"),
    ]
    report = {**step_benchmark_report(solutions, resamples=100), "first_error": first_error_summary(processbench_f1(solutions)),
              "too_long": {"count": 1, "context_length": 4096,
                           "solutions": [{"item": "x1", "solution": "GPT-4o", "steps": 40, "tokens": 5000}]},
              "model": {"version": "prm-v2"}}
    benchmark_record(version=version, project=bench, report=report)
    add_member(bench, make_user("boss"), Role.ADMIN)
    log_in(page, "boss")
    page.goto(f"/projects/{bench.pk}/prm/benchmark/")
    rows = page.locator("#paper-comparison tbody tr").all_inner_texts()
    # 17/35 = 48.6 sits below the paper's four figures.
    assert [row.split("\t")[-1] for row in rows] == ["62.3", "62.0", "60.3", "50.0", "48.6"]
    assert "This PRM (prm-v2)" in rows[-1]
    assert page.locator('#benchmark-sources tr[data-source="MathVerse"]').is_visible()
    assert "1 solution longer than the model's context (4096 tokens)" in page.locator("#too-long").inner_text()
    screenshot(page, "prm-benchmark")
