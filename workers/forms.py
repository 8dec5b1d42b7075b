"""Forms on the jobs page that start sampling, MC labelling and PRM pre-label jobs on a selection.

Each form validates what it can without the worker (required fields, ranges, that the selection
names existing items and is not empty, that a live PRM exists); a model folder or a server that
turns out wrong on the worker fails its job at once with the back end's message.
"""

from __future__ import annotations

from django import forms

from annotation.models import Item, Project
from prm.core import mc
from prm.core.judge import prompt_problems
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
        self.fields["server"].choices = [("", "—")] + [
            (name, f"{name} ({entry['model']})") for name, entry in sorted(generation_servers().items())
        ]

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
