"""The review list reaches every solution: each filter against hand-made disagreements, paging,
counts, "next disputed", access; and the review page by keyboard in the browser."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import (
    Assignment,
    AutoLabel,
    GoldLabel,
    HumanLabel,
    LabelChange,
    Project,
    Role,
    Solution,
)
from annotation.review import (
    ReviewFilterError,
    ReviewFilters,
    next_disputed_id,
    review_list_rows,
    review_solutions,
)
from tests.conftest import log_in, screenshot
from tests.factories import add_member, make_solution


def _label(solution, annotator, values, status=Assignment.Status.SUBMITTED):
    Assignment.objects.create(solution=solution, annotator=annotator, status=status)
    for step, value in zip(solution.steps.order_by("index"), values, strict=False):
        if value is not None:
            HumanLabel.objects.create(step=step, annotator=annotator, value=value)


def _step(solution, index=0):
    return solution.steps.get(index=index)


@pytest.fixture
def disputes(make_user):
    """Six solutions with known disagreements (overlap 2, annotators ann_a and ann_b)."""
    project = Project.objects.create(name="Disputes", overlap=2)
    a, b = make_user("ann_a"), make_user("ann_b")
    reviewer = make_user("rev")
    for user, role in ((a, Role.ANNOTATOR), (b, Role.ANNOTATOR), (reviewer, Role.REVIEWER)):
        add_member(project, user, role)

    def solution(external_id, steps, *, key, source, question="What is 2+3?"):
        made = make_solution(project, external_id, steps, key=key, question=question)
        made.item.data_source = source
        made.item.save()
        return made

    s = {
        # humans disagree on step 2; both submitted (complete at k = 2)
        "humans": solution("q1", ["one", "two"], key="m1", source="geo"),
        # both humans +1, MC says the step is wrong (mc = 0); b still working
        "mc": solution("q2", ["one"], key="m2", source="geo"),
        # human -1, PRM P(+) = 0.9; adjudicated; a question with a searchable word
        "prm": solution("q3", ["one"], key="m1", source="chart", question="Count the zebra stripes."),
        # nobody has it; a step with a searchable word
        "fresh": solution("q4", ["a zebra crossing"], key="m2", source="chart"),
        # flagged by a
        "flagged": solution("q5", ["one"], key="m1", source="geo"),
        # human +1 against an imported dataset label -1 (a kind the filter knows only by its value)
        "imported": solution("q6", ["one"], key="m3", source="geo"),
    }
    _label(s["humans"], a, [1, 1])
    _label(s["humans"], b, [1, -1])
    _label(s["mc"], a, [1])
    _label(s["mc"], b, [1], status=Assignment.Status.ASSIGNED)
    AutoLabel.objects.create(step=_step(s["mc"]), kind="mc", source="mc", score=0.0, num_correct=0, num_total=8)
    AutoLabel.objects.create(step=_step(s["humans"]), kind="mc", source="mc", score=0.5, num_correct=4, num_total=8)
    _label(s["prm"], a, [-1])
    AutoLabel.objects.create(step=_step(s["prm"]), kind="prm", source="prm-v1", score=0.9)
    GoldLabel.objects.create(step=_step(s["prm"]), value=-1, source=GoldLabel.Source.ADJUDICATED, decided_by=reviewer)
    _label(s["flagged"], a, [None], status=Assignment.Status.FLAGGED)
    _label(s["imported"], a, [1])
    AutoLabel.objects.create(step=_step(s["imported"]), kind="imported", source="dataset", value=-1)
    return project, s, reviewer


def _keys(project, s, **filters) -> list[str]:
    ids = list(review_solutions(project=project, filters=ReviewFilters(**filters)).values_list("id", flat=True))
    names = {solution.id: name for name, solution in s.items()}
    return [names[i] for i in ids]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["humans", "mc", "prm", "fresh", "flagged", "imported"]),
        ({"status": "unstarted"}, ["fresh"]),
        ({"status": "in_progress"}, ["mc"]),
        ({"status": "submitted"}, ["humans", "mc", "prm", "imported"]),
        ({"status": "complete"}, ["humans"]),
        ({"status": "flagged"}, ["flagged"]),
        ({"annotator": "ann_b"}, ["humans", "mc"]),
        ({"annotator": "nobody"}, []),
        ({"data_source": "chart"}, ["prm", "fresh"]),
        ({"policy_model": "m1"}, ["humans", "prm", "flagged"]),
        ({"humans_disagree": True}, ["humans"]),
        ({"machine": "mc"}, ["mc"]),  # the humans' MC (0.5 > 0: +1) agrees with their +1 there
        ({"machine": "prm"}, ["prm"]),
        ({"machine": "imported"}, ["imported"]),
        ({"disputed": True}, ["humans", "mc", "prm"]),  # imported dataset labels do not make a dispute
        ({"gold": "any"}, ["prm"]),
        ({"gold": "none"}, ["humans", "mc", "fresh", "flagged", "imported"]),
        ({"gold": "adjudicated"}, ["prm"]),
        ({"label": -1}, ["humans", "prm"]),
        ({"label": 0}, []),
        ({"q": "ZEBRA"}, ["prm", "fresh"]),  # the question of one, a step of the other
        ({"data_source": "geo", "humans_disagree": True, "annotator": "ann_a"}, ["humans"]),
    ],
)
def test_each_filter_finds_exactly_the_hand_made_cases(disputes, filters, expected):
    project, s, _ = disputes
    assert _keys(project, s, **filters) == expected


@pytest.mark.django_db
def test_a_neutral_label_disagrees_with_no_machine(disputes, make_user):
    project, s, _ = disputes
    HumanLabel.objects.filter(step__solution=s["prm"]).update(value=0)
    assert _keys(project, s, machine="prm") == []


@pytest.mark.django_db
def test_rows_carry_counts_and_reasons(disputes):
    project, s, _ = disputes
    rows = {row.solution_id: row for row in review_list_rows(solution_ids=[x.id for x in s.values()])}
    humans = rows[s["humans"].id]
    assert (humans.steps, humans.annotators, humans.labels, humans.gold_steps) == (2, 2, 4, 0)
    assert humans.reasons == ["annotators disagree"]
    assert rows[s["mc"].id].reasons == ["humans disagree with MC"] and rows[s["mc"].id].annotators == 1
    assert rows[s["prm"].id].reasons == ["humans disagree with PRM"] and rows[s["prm"].id].adjudicated
    assert rows[s["imported"].id].reasons == ["humans disagree with IMPORTED"]
    assert rows[s["fresh"].id].reasons == [] and rows[s["fresh"].id].labels == 0


@pytest.mark.django_db
def test_bad_filter_values_are_refused_naming_the_parameter(disputes):
    for params, field in (({"status": "done"}, "status"), ({"label": "2"}, "label"), ({"machine": "oracle"}, "machine"),
                          ({"gold": "maybe"}, "gold"), ({"humans_disagree": "yes"}, "humans_disagree")):
        with pytest.raises(ReviewFilterError) as raised:
            ReviewFilters.from_params(params)
        assert raised.value.field == field
    project, _, reviewer = disputes
    client = Client()
    client.force_login(reviewer)
    response = client.get(reverse("review-list", args=[project.id]), {"status": "done"})
    assert response.status_code == 400
    assert "status: &#x27;done&#x27; is not one of" in response.content.decode()


@pytest.mark.django_db
def test_the_list_pages_with_counts_and_filters_are_links(disputes, monkeypatch):
    project, s, reviewer = disputes
    monkeypatch.setattr("annotation.review_views.PAGE_SIZE", 2)
    client = Client()
    client.force_login(reviewer)
    url = reverse("review-list", args=[project.id])
    seen = []
    for number in (1, 2, 3):
        html = client.get(url, {"data_source": "geo", "page": number}).content.decode()
        assert "<strong>4</strong> of 6 solutions" in html
        assert f"page {number} of 2" in html or number == 3
        seen += [sid for sid in (x.id for x in s.values()) if f'data-solution="{sid}"' in html]
    # Page 3 of 2 shows the last page again (get_page), so the four geo solutions appear once each on 1 and 2.
    assert sorted(seen[:4]) == sorted(x.id for k, x in s.items() if k in ("humans", "mc", "flagged", "imported"))
    first = client.get(url, {"data_source": "geo"}).content.decode()
    assert "?data_source=geo&amp;page=2" in first  # the pager keeps the filters
    assert f"/review/solutions/{s['humans'].id}/?data_source=geo" in first  # so do the rows' links
    # htmx asks for the results only.
    partial = client.get(url, {"data_source": "geo"}, HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="review-results">') and "review-filters" not in partial


@pytest.mark.django_db
def test_next_disputed_skips_adjudicated_and_wraps(disputes):
    project, s, _ = disputes
    # Disputed: humans, mc, prm; prm is adjudicated.
    assert next_disputed_id(project=project) == s["humans"].id
    assert next_disputed_id(project=project, after_id=s["humans"].id) == s["mc"].id
    assert next_disputed_id(project=project, after_id=s["mc"].id) == s["humans"].id  # wraps to the start
    GoldLabel.objects.create(step=_step(s["humans"]), value=1, source=GoldLabel.Source.ADJUDICATED)
    assert next_disputed_id(project=project, after_id=s["mc"].id) is None


@pytest.mark.django_db
def test_the_solution_page_links_previous_next_within_the_filter_and_next_disputed(disputes):
    project, s, reviewer = disputes
    client = Client()
    client.force_login(reviewer)
    html = client.get(reverse("review-solution", args=[project.id, s["mc"].id]), {"data_source": "geo"}).content.decode()
    assert f'href="/projects/{project.id}/review/solutions/{s["humans"].id}/?data_source=geo" id="previous-solution"' in html
    assert f'href="/projects/{project.id}/review/solutions/{s["flagged"].id}/?data_source=geo" id="next-solution"' in html
    assert "2 of 4" in html
    assert f'href="/projects/{project.id}/review/solutions/{s["humans"].id}/" id="next-disputed"' in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "expected"),
    [("anonymous", 302), ("outsider", 404), ("annotator", 403), ("other_admin", 404), ("reviewer", 200), ("staff", 200)],
)
def test_review_pages_and_gold_check_access(disputes, make_user, who, expected):
    project, s, reviewer = disputes
    other = Project.objects.create(name="Elsewhere")
    people = {
        "outsider": make_user("mallory"),
        "annotator": Project.objects.get(pk=project.pk).members.get(username="ann_a"),
        "other_admin": make_user("admin_elsewhere"),
        "reviewer": reviewer,
        "staff": make_user("boss", staff=True),
    }
    add_member(other, people["other_admin"], Role.ADMIN)
    client = Client()
    if who != "anonymous":
        client.force_login(people[who])
    step = _step(s["fresh"])
    urls = [
        reverse("review-list", args=[project.id]) + "?disputed=1&q=zebra&page=2",
        reverse("review-solution", args=[project.id, s["fresh"].id]) + "?status=unstarted",
    ]
    for url in urls:
        assert client.get(url).status_code == expected, url
    gold = client.post(reverse("review-set-gold", args=[project.id, s["fresh"].id, step.id]), {"value": "1"})
    if expected == 200:
        assert gold.status_code == 302 and GoldLabel.objects.get(step=step).value == 1
    else:
        assert gold.status_code == expected
        assert not GoldLabel.objects.filter(step=step).exists()
        assert not LabelChange.objects.filter(step=step).exists()


# --- in the browser ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_review_by_keyboard_next_previous_and_gold_keys(page, disputes):
    project, s, _ = disputes
    log_in(page, "rev")
    page.goto(f"/projects/{project.id}/review/?data_source=geo")
    page.wait_for_selector("#review-results")
    assert page.locator("#review-results tbody tr").count() == 4
    # Filters refresh the list in place (htmx) and the address keeps them.
    page.select_option("#f-annotator", "ann_b")
    page.wait_for_function("document.querySelectorAll('#review-results tbody tr[data-solution]').length === 2")
    assert "annotator=ann_b" in page.url
    screenshot(page, "review-list-filtered")
    page.click(f"tr[data-solution='{s['humans'].id}'] a")
    page.wait_for_selector("table.review")
    assert "annotator=ann_b" in page.url and "1 of 2" in page.inner_text("#review-position")

    steps = list(s["humans"].steps.order_by("index"))
    page.keyboard.press("x")  # gold of step 1 (focused first: none has gold) is -1, focus moves on
    page.wait_for_selector(f"#review-step-{steps[0].id}[data-gold='-1']")
    page.keyboard.press("c")
    page.wait_for_selector(f"#review-step-{steps[1].id}[data-gold='1']")
    assert dict(GoldLabel.objects.filter(step__in=steps).values_list("step_id", "value")) == {steps[0].id: -1, steps[1].id: 1}
    page.keyboard.press("k")  # focus stays on the last step after its gold; k then j come back to it
    page.keyboard.press("j")
    page.keyboard.press("2")  # step 2 again: neutral
    page.wait_for_selector(f"#review-step-{steps[1].id}[data-gold='0']")
    assert GoldLabel.objects.get(step=steps[1]).value == 0
    screenshot(page, "review-keyboard-gold")

    page.keyboard.press("]")  # next within annotator=ann_b: the mc solution
    page.wait_for_url(lambda url: url.endswith(f"/review/solutions/{s['mc'].id}/?annotator=ann_b&data_source=geo"))
    page.wait_for_selector("#review-steps")
    page.keyboard.press("[")
    page.wait_for_url(lambda url: url.endswith(f"/review/solutions/{s['humans'].id}/?annotator=ann_b&data_source=geo"))
    page.wait_for_selector("#review-steps")
    page.keyboard.press("d")  # next disputed: humans is adjudicated now, prm too: mc
    page.wait_for_url(lambda url: url.endswith(f"/review/solutions/{s['mc'].id}/"))
    assert Solution.objects.filter(pk=s["mc"].id).exists()


@pytest.mark.django_db
def test_a_new_automatic_kind_is_filtered_by_its_value_alone(disputes):
    """The LLM judge kind (added after the filters were written) works with no code of its own."""
    project, s, _ = disputes
    AutoLabel.objects.create(step=_step(s["fresh"]), kind="judge", source="judge-model", value=-1, reason="wrong")
    AutoLabel.objects.create(step=_step(s["imported"]), kind="judge", source="judge-model", value=-1, reason="no")
    assert _keys(project, s, machine="judge") == ["imported"]  # fresh has no human label to disagree with
    assert _keys(project, s, disputed=True) == ["humans", "mc", "prm", "imported"]
    row = review_list_rows(solution_ids=[s["imported"].id])[0]
    assert row.reasons == ["humans disagree with IMPORTED", "humans disagree with JUDGE"]
