import pytest

from annotation.formats.records import DatasetImportError
from annotation.models import Image, Item, ItemImage, Solution, Step
from annotation.services.dataset_import import dataset_import
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db


def test_mathv_imports_every_question_and_response(project):
    folder = shared_data("math-v-testmini")
    result = dataset_import(project=project, format_name="mathv", path=folder)
    assert Item.objects.filter(project=project).count() == 304
    assert Solution.objects.filter(item__project=project).count() == 304 * 5
    assert result.solutions_created == 1520
    assert result.steps_created == Step.objects.filter(solution__item__project=project).count()
    assert Step.objects.filter(solution__item__project=project).count() > 1520
    assert ItemImage.objects.filter(item__project=project).count() == 304
    # Every item has five solutions from five different models, one with published correctness.
    item = Item.objects.get(project=project, external_id="5")
    assert item.answer == "61"
    assert sorted(item.solutions.values_list("key", flat=True))[0] == "ChatGPT3.5-CoT-caption"
    gpt = item.solutions.get(key="ChatGPT3.5-CoT-caption")
    assert gpt.is_correct is True and gpt.final_answer == "61"
    assert Image.objects.count() <= 304


def test_mathv_reimport_creates_nothing(project):
    folder = shared_data("math-v-testmini")
    dataset_import(project=project, format_name="mathv", path=folder)
    counts = (Item.objects.count(), Solution.objects.count(), Step.objects.count(), Image.objects.count())
    again = dataset_import(project=project, format_name="mathv", path=folder)
    assert again.solutions_created == 0 and again.items_created == 0
    assert again.solutions_existing == 1520
    assert (Item.objects.count(), Solution.objects.count(), Step.objects.count(), Image.objects.count()) == counts


def test_mathv_unknown_question_id_names_file_line_field(project, tmp_path):
    folder = tmp_path / "mv"
    (folder / "responses").mkdir(parents=True)
    (folder / "q.jsonl").write_text('{"id": "1", "question": "q", "options": [], "answer": "2"}\n')
    (folder / "responses" / "M.jsonl").write_text(
        '{"id": "1", "model": "m", "response": "a\\n\\nb", "model_answer": "2", "correct": true}\n'
        '{"id": "9", "model": "m", "response": "a", "model_answer": "2", "correct": true}\n'
    )
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="mathv", path=folder)
    assert caught.value.file == "responses/M.jsonl" and caught.value.line == 2 and caught.value.field == "id"
    assert Item.objects.count() == 0 and Solution.objects.count() == 0


def test_every_jsonl_importer_names_the_field_where_json_broke(project, tmp_path):
    # The shared reader names the field, so formats without their own error handling get it too.
    folder = tmp_path / "mv"
    (folder / "responses").mkdir(parents=True)
    (folder / "q.jsonl").write_text('{"id": "1", "question": "q", "options": [], "answer": "2"}\n')
    (folder / "responses" / "M.jsonl").write_text('{"id": "1", "model": "m", "response": "a\\n\\nb", "model_answer": 2,, "correct": true}\n')
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="mathv", path=folder)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("responses/M.jsonl", 1, "model_answer")
    assert "malformed JSON" in caught.value.message and Item.objects.count() == 0
