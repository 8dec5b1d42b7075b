"""What each import format reads and which options it takes, for people (the import page, its form).

Every option named here is one a parser in this package reads (`source.options`); the import form
passes only these, so a person can not set an option the format would silently ignore.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FormatGuide:
    name: str
    title: str
    upload: str  # what the dataset file is
    images: str  # where the images come from
    options: dict[str, str] = field(default_factory=dict)  # option -> what it does (and its default)
    folder: bool = False  # the upload is a zip of a folder


IMPORT_GUIDE: dict[str, FormatGuide] = {
    guide.name: guide
    for guide in (
        FormatGuide(
            "mathv", "MATH-Vision (questions + responses folder)",
            "A zip of the dataset folder: one questions .jsonl (id, question, options, answer, image), "
            "responses/<model>.jsonl (id, response, correct) and the images the questions name.",
            "Inside the folder zip (the paths each question's `image` names); no separate images zip needed.",
            {
                "data_source": "Data source of every item (default MATH-V).",
                "max_steps": "Longer responses are merged into at most this many steps (default: the site's limit).",
                "questions": "The questions file inside the folder, when it holds more than one .jsonl.",
                "responses": "The responses folder inside the folder (default responses/).",
            },
            folder=True,
        ),
        FormatGuide(
            "visualprocessbench", "VisualProcessBench (test.jsonl, human step labels)",
            "test.jsonl: image (paths), question, answer, response.steps, response.process_correctness "
            "(1 / 0 / -1 per step), policy_model, data_source. Labels become imported gold labels.",
            "images.zip holding the paths the records name.",
            {"origin": "Origin recorded on the gold labels (default VisualProcessBench)."},
        ),
        FormatGuide(
            "visualprm400k-raw", "VisualPRM400K Raw (Monte Carlo counts per step)",
            "JSON lines with image, question, question_orig, answer, response, steps_with_score "
            "(score, num_mc_correct, num_mc_total). Counts become MC labels.",
            "A zip (or folder zip) holding the image paths the records name.",
            {
                "source": "Label source of the MC labels (default: the dataset's name).",
                "data_source": "Data source of items without one (default: the file's name).",
            },
        ),
        FormatGuide(
            "visualprm400k", "VisualPRM400K conversations (+ / - per step)",
            "JSON lines of InternVL training conversations; \"+\" / \"-\" turns become imported machine labels.",
            "A zip holding the image paths the records name.",
            {
                "source": "Label source of the imported labels (default: the dataset's name).",
                "data_source": "Data source of the items (default: the file's name).",
            },
        ),
        FormatGuide(
            "prm800k", "PRM800K (-1 / 0 / +1 ratings)",
            "JSON lines (or concatenated JSON objects) in OpenAI's PRM800K schema; ratings become gold labels.",
            "Text only: no images.",
            {
                "gold_origin": "Origin recorded on the gold labels (default PRM800K).",
                "data_source": "Data source of the items (default PRM800K).",
                "policy_model": "Policy model recorded on the solutions (default empty).",
            },
        ),
        FormatGuide(
            "processbench", "ProcessBench (index of the first wrong step)",
            "A JSON array or JSON lines: id, generator, problem, steps, label (first wrong step, -1 when all right).",
            "Text only: no images.",
            {
                "data_source": "Data source of the items (default: the file's name, e.g. gsm8k).",
                "gold_origin": "Origin recorded on the gold labels (default ProcessBench).",
            },
        ),
        FormatGuide(
            "trl-stepwise", "TRL stepwise supervision (.jsonl or .parquet)",
            "prompt, completions (steps), labels (booleans), optional images and id; .parquet rows may carry image bytes.",
            "Image bytes inside parquet rows, or a zip holding the paths the rows name.",
            {
                "label_kind": "auto (imported machine labels, default) or gold (imported gold labels).",
                "source": "Label source of the imported labels (default trl:<file name>).",
                "id_column": "Column holding the item id (default id).",
            },
        ),
    )
}

# Every option any format takes, in the order the form shows them.
ALL_OPTIONS: tuple[str, ...] = tuple(dict.fromkeys(name for guide in IMPORT_GUIDE.values() for name in guide.options))
