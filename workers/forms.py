"""Forms on the jobs page that start sampling, MC labelling and PRM pre-label jobs on a selection.

Each form validates what it can without the worker (required fields, ranges, that the selection
names existing items and is not empty, that a live PRM exists); a model folder or a server that
turns out wrong on the worker fails its job at once with the back end's message.
"""

from __future__ import annotations

from django import forms

from annotation.formats.guide import ALL_OPTIONS, IMPORT_GUIDE
from annotation.formats.step_labels import DEFAULT_NEUTRAL, NEUTRAL_CHOICES
from annotation.models import Item, Project
from annotation.selectors import LABEL_SOURCES, ExportFilters
from annotation.services.dataset_export import EXPORT_FORMATS
from prm.core import mc
from prm.core.judge import prompt_problems
from prm.core.merge import MergePolicy
from prm.models import TrainingRun
from workers.export_services import EXPORT_FLAGS
from workers.generation.base import BACKENDS
from workers.generation.openai_backend import generation_servers
from workers.judge_services import JUDGE_MAX_TOKENS, project_judge_prompt
from workers.prelabel_services import live_prm_version, no_live_prm_message
from workers.selection import (
    SELECTION_KINDS,
    Selection,
    SelectionError,
    parse_external_ids,
    selected_items,
    selected_solutions,
)


class GroupedForm(forms.Form):
    """A form whose fields the page shows in titled rows (`field_groups`)."""

    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def field_groups(self) -> list[tuple[str, list]]:
        return [(title, [self[name] for name in names]) for title, names in self.groups]


SELECTION_GROUP = ("Selection", ("selection", "data_source", "external_ids"))
BACKEND_GROUP = ("Policy", ("backend", "model_path", "server", "label"))


class SelectionForm(GroupedForm):
    selection = forms.ChoiceField(choices=list(SELECTION_KINDS.items()), initial="all")
    data_source = forms.ChoiceField(required=False, choices=[])
    external_ids = forms.CharField(required=False, label="External ids (comma-separated)")

    # Whether the job works on items (sampling) or solutions (labelling).
    selects_items = False

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        sources = Item.objects.filter(project=project).exclude(data_source="").values_list("data_source", flat=True)
        self.fields["data_source"].choices = [("", "—")] + [(s, s) for s in sorted(set(sources))]
        self.selected_ids: list[int] = []

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("selection")
        if kind is None:
            return cleaned
        if kind == "data_source" and not cleaned.get("data_source"):
            self.add_error("data_source", "Choose the data source to select.")
            return cleaned
        external_ids = parse_external_ids(cleaned.get("external_ids", ""))
        if kind == "external_ids" and not external_ids:
            self.add_error("external_ids", "List at least one item external id, separated by commas.")
            return cleaned
        selection = Selection(kind=kind, data_source=cleaned.get("data_source", ""), external_ids=external_ids)
        try:
            query = (selected_items if self.selects_items else selected_solutions)(project=self.project, selection=selection)
            self.selected_ids = list(query.order_by("pk").values_list("pk", flat=True))
        except SelectionError as exc:
            self.add_error("external_ids" if kind == "external_ids" else "selection", str(exc))
            return cleaned
        if not self.selected_ids:
            what = "items" if self.selects_items else "solutions"
            self.add_error("selection", f"The selection ({selection.describe()}) holds no {what}.")
        return cleaned


class BackendForm(GroupedForm):
    backend = forms.ChoiceField(choices=[(b, b) for b in BACKENDS], initial="openai")
    model_path = forms.CharField(required=False, label="Local model folder (transformers, vllm)")
    # Only the servers the operator listed (STEPMARK_GENERATION_SERVERS): workers call nothing else.
    server = forms.ChoiceField(required=False, choices=[], label="Server (openai)")
    # Names the label source and the solution keys; defaults to the model's name.
    label = forms.CharField(required=False, max_length=100, label="Policy name (optional)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        servers = generation_servers()
        self.fields["server"].choices = [("", "—")] + [
            (name, f"{name} ({entry['model']})") for name, entry in sorted(servers.items())
        ]
        local = local_model_folder()
        if local:
            self.fields["model_path"].initial = local
            self.fields["model_path"].help_text = f"The local model on this installation: {local}"
        if not servers:
            # No server listed (the embedded ./run.sh): a local folder is what works here.
            self.fields["backend"].initial = "transformers"

    def clean(self):
        cleaned = super().clean()
        backend = cleaned.get("backend")
        if backend == "openai":
            if not cleaned.get("server") and "server" not in self.errors:
                listed = "Choose one of the servers." if generation_servers() else (
                    "No server is configured: the operator lists them in STEPMARK_GENERATION_SERVERS."
                )
                self.add_error("server", f"An OpenAI-compatible back end needs a server. {listed}")
        elif backend in ("transformers", "vllm") and not cleaned.get("model_path", "").strip():
            self.add_error("model_path", f"The {backend} back end needs a local model folder.")
        return cleaned

    def backend_params(self) -> dict:
        data = self.cleaned_data
        if data["backend"] == "openai":
            server = data["server"]
            # The model is kept for the label source's name; the worker looks the server up again by name.
            params = {"backend": "openai", "server": server, "model": generation_servers()[server]["model"]}
        else:
            params = {"backend": data["backend"], "model_path": data["model_path"].strip()}
        if data.get("label", "").strip():
            params["name"] = data["label"].strip()
        return params


def local_model_folder() -> str:
    """The installation's local model folder (./run.sh builds a tiny Qwen2-VL there), or "" when absent."""
    from pathlib import Path

    from django.conf import settings

    folder = Path(settings.STEPMARK_DEFAULT_BACKBONE)
    return str(folder) if (folder / "config.json").is_file() else ""


class SampleJobForm(BackendForm, SelectionForm):
    n = forms.IntegerField(min_value=1, max_value=64, initial=4, label="Solutions per item")
    selects_items = True
    groups = (SELECTION_GROUP, BACKEND_GROUP, ("Sampling", ("n",)))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["selection"].choices = [
            ("all", "all items"),
            ("unlabelled", "only unlabelled items (no human or gold label yet)"),
            ("data_source", "one data source"),
            ("external_ids", "items by external id"),
        ]


class MCJobForm(BackendForm, SelectionForm):
    strategy = forms.ChoiceField(choices=[(s, s.replace("_", " ")) for s in mc.STRATEGIES], initial="exhaustive")
    k = forms.IntegerField(min_value=1, max_value=256, initial=mc.DEFAULT_K, label="Completions per step (K)")
    max_steps = forms.TypedChoiceField(
        choices=[(n, f"{n}" + (" (VisualPRM)" if n == mc.DEFAULT_MAX_STEPS else " (VisualPRM400K-v1.1)"))
                 for n in mc.MAX_STEPS_CHOICES],
        coerce=int,
        required=False,
        empty_value=mc.DEFAULT_MAX_STEPS,
        initial=mc.DEFAULT_MAX_STEPS,
        label="Steps estimated at most (longer solutions are merged)",
    )
    early_stop = forms.BooleanField(
        required=False,
        initial=False,
        label="Early stop: leave the steps after the first with mc = 0 unsampled (the released pipeline's default)",
    )
    groups = (SELECTION_GROUP, BACKEND_GROUP, ("Estimate", ("strategy", "k", "max_steps", "early_stop")))


class PrelabelJobForm(SelectionForm):
    groups = (SELECTION_GROUP,)

    def clean(self):
        if live_prm_version(project=self.project) is None:
            raise forms.ValidationError(no_live_prm_message(self.project))
        return super().clean()


class ImportForm(forms.Form):
    """The import page's form: a format, the dataset file, its images, and the format's own options."""

    format = forms.ChoiceField(label="Format")
    file = forms.FileField(label="Dataset file (a zip of the folder for folder formats)")
    images = forms.FileField(required=False, label="Images (a zip of the image files or of their folder)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["format"].choices = [(name, guide.title) for name, guide in IMPORT_GUIDE.items()]
        for name in ALL_OPTIONS:
            takers = [guide.name for guide in IMPORT_GUIDE.values() if name in guide.options]
            self.fields[f"option_{name}"] = forms.CharField(
                required=False, max_length=500, label=name, help_text=f"{', '.join(takers)}; blank for the default"
            )

    def option_fields(self):
        return [self[f"option_{name}"] for name in ALL_OPTIONS]

    def clean(self):
        cleaned = super().clean()
        format_name = cleaned.get("format")
        if format_name is None:
            return cleaned
        guide = IMPORT_GUIDE[format_name]
        options: dict[str, object] = {}
        for name in ALL_OPTIONS:
            value = (cleaned.get(f"option_{name}") or "").strip()
            if not value:
                continue
            if name not in guide.options:
                self.add_error(f"option_{name}", f"The {format_name} format takes no option {name}: leave it blank.")
                continue
            if name == "max_steps":
                if not value.isdigit() or int(value) < 1:
                    self.add_error(f"option_{name}", "A whole number of steps, at least 1.")
                    continue
                options[name] = int(value)
            else:
                options[name] = value
        upload = cleaned.get("file")
        if upload is not None and guide.folder and not (upload.name or "").lower().endswith(".zip"):
            self.add_error("file", f"The {format_name} format reads a folder: upload a zip of it.")
        cleaned["options"] = options
        return cleaned


class ExportJobForm(GroupedForm):
    """Every filter and format option of `manage.py export_dataset`, on the jobs page."""

    format = forms.ChoiceField(label="Format")
    file_format = forms.ChoiceField(
        required=False, label="File kind (trl-stepwise: parquet with the images inside, or JSON lines)",
        choices=[("", "the format's default"), ("jsonl", "jsonl"), ("parquet", "parquet")],
    )
    neutral = forms.ChoiceField(
        choices=[(choice, choice) for choice in NEUTRAL_CHOICES], initial=DEFAULT_NEUTRAL,
        label="Neutral steps are written as (visualprm400k, trl-stepwise; skip ends the row before the first)",
    )
    images_zip = forms.BooleanField(required=False, label="Images zip beside the file (JSON-lines formats)")
    label_source = forms.ChoiceField(choices=[(s, s) for s in LABEL_SOURCES], initial="merged", label="Labels")
    complete_only = forms.BooleanField(required=False, label="complete solutions only")
    only_agreed = forms.BooleanField(required=False, label="only labels every annotator agrees on")
    only_adjudicated = forms.BooleanField(required=False, label="only solutions with reviewer-adjudicated gold")
    since = forms.DateTimeField(required=False, label="Created at or after (YYYY-MM-DD [HH:MM])")
    until = forms.DateTimeField(required=False, label="Created before (YYYY-MM-DD [HH:MM])")
    mc_label = forms.ChoiceField(choices=[("value", "value (+ when mc > threshold)"), ("advantage", "advantage")],
                                 initial="value", label="MC label")
    mc_threshold = forms.FloatField(initial=0.0, min_value=0.0, max_value=1.0, label="MC threshold")
    advantage_tolerance = forms.FloatField(initial=0.0, min_value=0.0, label="Advantage tolerance")
    consensus_filter = forms.BooleanField(required=False, label="consensus filter (no label where machine and human disagree)")
    use_judge = forms.BooleanField(required=False, label="judge after MC (the LLM judge's verdict where no gold, human or MC label)")
    mc_judge_consensus = forms.BooleanField(required=False, label="MC–judge consensus (a machine-labelled step only where MC and the judge agree)")
    judge_first = forms.BooleanField(required=False, label="judge before MC (where both label a step)")
    judge_source = forms.CharField(required=False, max_length=100, label="Judge model (labels: judge or merged; blank: any)")
    training_run = forms.ChoiceField(
        required=False, label="Or: every merge setting of a training run (its recorded policy, as --merge-policy)",
    )
    groups = (
        ("File", ("format", "file_format", "neutral", "images_zip")),
        ("Which solutions and labels", ("label_source", "complete_only", "only_agreed", "only_adjudicated", "since", "until")),
        ("Merge policy (labels: merged)", ("mc_label", "mc_threshold", "advantage_tolerance", "consensus_filter",
                                           "use_judge", "judge_first", "mc_judge_consensus", "judge_source",
                                           "training_run")),
    )

    def __init__(self, *args, project: Project | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["format"].choices = [(name, name) for name in sorted(EXPORT_FORMATS)]
        runs = TrainingRun.objects.filter(project=project).order_by("-id")[:50] if project is not None else []
        self.run_policies = {str(run.pk): run.merge_policy for run in runs}
        self.fields["training_run"].choices = [("", "the settings above")] + [
            (str(run.pk), f"training run #{run.pk} ({run.created_at:%Y-%m-%d %H:%M})") for run in runs
        ]
        if self.is_bound:  # fields left out of a post (an older form, the API) take their defaults
            data = self.data.copy()
            for name in ("neutral", "label_source", "mc_label", "mc_threshold", "advantage_tolerance"):
                if not data.get(name):
                    data[name] = self.fields[name].initial
            self.data = data

    def start_kwargs(self) -> dict:
        data = self.cleaned_data
        filters = {name: data[name] for name in ("mc_label", "mc_threshold", "advantage_tolerance", "consensus_filter",
                                                 "judge_first")}
        for name in ("since", "until", "judge_source"):
            if data.get(name):
                filters[name] = data[name]
        flags = {flag for flag in EXPORT_FLAGS if data.get(flag)}
        if data.get("training_run"):
            # Exactly the labels that run trained on (the split aside): its policy replaces the fields above.
            recorded = ExportFilters.for_policy(MergePolicy.from_dict(self.run_policies[data["training_run"]]))
            policy_fields = ("only_agreed", "mc_label", "mc_threshold", "advantage_tolerance", "neutral",
                             "consensus_filter", "use_judge", "judge_first", "judge_source", "mc_judge_consensus")
            filters.update({name: getattr(recorded, name) for name in policy_fields})
        return {
            "format_name": data["format"], "label_source": data["label_source"],
            "flags": flags,
            "filters": filters, "neutral": data["neutral"], "file_format": data.get("file_format") or None,
            "images_zip": data.get("images_zip", False),
        }


class JudgeJobForm(SelectionForm):
    """An LLM judge (one of the operator's servers) labels every step +1/0/-1 with a reason."""

    server = forms.ChoiceField(choices=[], label="Judge server")
    prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "cols": 90}),
        label="Prompt ({question}, {steps}, {num_steps} are filled in)",
    )
    save_prompt = forms.BooleanField(required=False, initial=False, label="Keep as the project's judge prompt")
    temperature = forms.FloatField(min_value=0, max_value=2, initial=0.0)
    max_tokens = forms.IntegerField(min_value=1, max_value=32768, initial=JUDGE_MAX_TOKENS, label="Max tokens per reply")
    groups = (SELECTION_GROUP, ("Judge", ("server", "temperature", "max_tokens")), ("Prompt", ("prompt", "save_prompt")))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["server"].choices = [
            (name, f"{name} ({entry['model']})") for name, entry in sorted(generation_servers().items())
        ]
        self.fields["prompt"].initial = project_judge_prompt(self.project)

    def clean_server(self):
        server = self.cleaned_data["server"]
        if server not in generation_servers():
            raise forms.ValidationError("Choose one of the servers the operator listed (STEPMARK_GENERATION_SERVERS).")
        return server

    def clean_prompt(self):
        prompt = self.cleaned_data["prompt"].strip()
        problems = prompt_problems(prompt)
        if problems:
            raise forms.ValidationError("; ".join(problems).capitalize() + ".")
        return prompt
