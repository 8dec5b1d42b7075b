"""MATH-Vision style: a questions file plus one responses file per policy model.

Layout (as `../shared/data/math-v-testmini`):
  testmini.jsonl           id, question, options, answer, solution, level, subject, image
  responses/<Model>.jsonl  id, model, response, model_answer, correct
  images/...               paths named by each question's `image`

Each (question, responses file) pair becomes one solution keyed by the file's name, split
into steps by `annotation.steps.split_steps`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from annotation.formats.reading import RecordReader, int_option, iter_json_records, option_path
from annotation.formats.records import DatasetImportError, ParsedItem, ParsedSolution
from annotation.steps import split_steps


def _questions_file(folder: Path, source) -> Path:
    chosen = option_path(folder, source.options, "questions", confined=source.confined)
    if chosen is not None:
        if not chosen.is_file():
            raise DatasetImportError(
                f"option 'questions': {source.options['questions']!r} is not a file", field="options.questions"
            )
        return chosen
    candidates = sorted(p for p in folder.glob("*.jsonl"))
    if len(candidates) != 1:
        raise DatasetImportError(
            f"expected one questions .jsonl file in the folder, found {len(candidates)}; pass the 'questions' option",
            file=folder.name,
        )
    return candidates[0]


def parse(source) -> Iterator[ParsedSolution]:
    folder = source.path
    if not folder.is_dir():
        raise DatasetImportError("the mathv format takes a folder (questions file + responses/)", file=folder.name)
    max_steps = int_option(source.options, "max_steps", default=settings.STEPMARK_MAX_STEPS, file=folder.name)
    questions_path = _questions_file(folder, source)
    questions: dict[str, ParsedItem] = {}
    for line, record in iter_json_records(questions_path):
        reader = RecordReader(record, file=questions_path.name, line=line)
        external_id = reader.text("id")
        if external_id in questions:
            raise reader.error(f"duplicate question id {external_id!r}", "id")
        image = reader.get("image", str, required=False)
        extra_images = reader.string_list("images", required=False)
        metadata = {
            key: record[key] for key in ("level", "subject", "solution") if record.get(key) is not None
        }
        questions[external_id] = ParsedItem(
            external_id=external_id,
            question=reader.text("question"),
            options=reader.string_list("options", required=False),
            answer=reader.text("answer", required=False),
            data_source=str(source.options.get("data_source", "MATH-V")),
            metadata=metadata,
            image_paths=([image] if image else []) + extra_images,
        )
    responses_dir = option_path(folder, source.options, "responses", confined=source.confined) or folder / "responses"
    response_files = sorted(responses_dir.glob("*.jsonl")) if responses_dir.is_dir() else []
    if not response_files:
        raise DatasetImportError("no responses/*.jsonl files: nothing to import", file=folder.name)
    for responses_path in response_files:
        file_label = f"{responses_dir.name}/{responses_path.name}"
        for line, record in iter_json_records(responses_path, label=file_label):
            reader = RecordReader(record, file=file_label, line=line)
            question_id = reader.text("id")
            item = questions.get(question_id)
            if item is None:
                raise reader.error(f"no question with id {question_id!r} in {questions_path.name}", "id")
            response = reader.text("response")
            correct = reader.get("correct", bool, required=False)
            steps = split_steps(response, max_steps=max_steps)
            if not steps:
                raise reader.error("response is empty", "response")
            yield ParsedSolution(
                item=item,
                key=responses_path.stem,
                steps=steps,
                response=response,
                policy_model=reader.text("model", required=False) or responses_path.stem,
                final_answer=reader.text("model_answer", required=False),
                is_correct=correct,
                line=line,
                file=file_label,
            )
