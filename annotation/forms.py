"""Forms of the project and people pages: they parse and validate; services do the writing."""

from __future__ import annotations

from django import forms
from django.contrib.auth.validators import UnicodeUsernameValidator

from annotation.models import Project, Role
from annotation.services.people import INVITATION_DAYS, INVITATION_MAX_DAYS
from prm.core.judge import prompt_problems

PROJECT_SETTINGS_FIELDS = [
    "name",
    "guidelines",
    "label_mode",
    "overlap",
    "gold_rate",
    "max_steps",
    "show_machine_labels",
    "show_reference_answer",
    "error_categories_enabled",
    "error_categories",
    "judge_prompt",
]


class CategoryLinesField(forms.CharField):
    """The project's error categories, one per line (stored as a JSON list)."""

    widget = forms.Textarea(attrs={"rows": 7})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value):
        lines = [line.strip() for line in (super().to_python(value) or "").splitlines()]
        return [line for line in lines if line]


class ProjectSettingsForm(forms.ModelForm):
    """Every setting of a project a project admin may edit."""

    error_categories = CategoryLinesField(
        required=False,
        label="Error categories (one per line)",
        help_text='Offered, in this order, on keys 1 to 9 after "incorrect"; "other" takes a note.',
    )

    class Meta:
        model = Project
        fields = PROJECT_SETTINGS_FIELDS
        labels = {
            "guidelines": "Guidelines (markdown)",
            "overlap": "Annotators per solution (overlap)",
            "gold_rate": "Gold-check rate",
            "max_steps": "Max steps per solution",
            "show_machine_labels": "Annotators see machine hints (MC and PRM scores, judge verdicts)",
            "show_reference_answer": "Annotators see the reference answer",
            "error_categories_enabled": "An incorrect step may carry an error category",
            "judge_prompt": "LLM judge prompt (empty: the default)",
        }
        help_texts = {
            "overlap": "How many different annotators label each solution. Raising it reopens finished solutions.",
            "gold_rate": "Share of items (0 to 1) that are hidden quality checks with known gold labels; 0 turns them off.",
            "show_machine_labels": "Reviewers and admins always see them. Hints can anchor judgements.",
            "show_reference_answer": "Reviewers and admins always see it.",
        }
        widgets = {
            "guidelines": forms.Textarea(attrs={"rows": 14, "class": "guidelines-input"}),
            "overlap": forms.NumberInput(attrs={"min": 1, "max": 50}),
            "gold_rate": forms.NumberInput(attrs={"min": 0, "max": 1, "step": "any"}),
            "max_steps": forms.NumberInput(attrs={"min": 1, "max": 200}),
            "judge_prompt": forms.Textarea(attrs={"rows": 8}),
        }

    def clean_overlap(self) -> int:
        overlap = self.cleaned_data["overlap"]
        if overlap is None or not 1 <= overlap <= 50:
            raise forms.ValidationError("Overlap must be a whole number from 1 to 50.")
        return overlap

    def clean_gold_rate(self) -> float:
        rate = self.cleaned_data["gold_rate"]
        if rate is None or not 0 <= rate <= 1:
            raise forms.ValidationError("The gold-check rate is a share: a number from 0 to 1 (0.05 is one item in 20).")
        return rate

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("error_categories_enabled") and not cleaned.get("error_categories"):
            self.add_error("error_categories", "List at least one category, one per line, or turn error categories off.")
        return cleaned

    def clean_judge_prompt(self) -> str:
        prompt = (self.cleaned_data.get("judge_prompt") or "").strip()
        problems = prompt_problems(prompt) if prompt else []
        if problems:
            raise forms.ValidationError("; ".join(problems).capitalize() + ".")
        return prompt

    def clean_max_steps(self) -> int | None:
        steps = self.cleaned_data["max_steps"]
        if steps is not None and not 1 <= steps <= 200:
            raise forms.ValidationError("Max steps must be from 1 to 200, or empty for the site default.")
        return steps


class ProjectCreateForm(ProjectSettingsForm):
    """A new project: the settings page offers the rest once it exists."""

    error_categories = None  # a declared field of the settings form: not offered here

    class Meta(ProjectSettingsForm.Meta):
        fields = ["name", "label_mode", "overlap", "guidelines"]
        widgets = {**ProjectSettingsForm.Meta.widgets, "guidelines": forms.Textarea(attrs={"rows": 5})}


ROLE_CHOICES = Role.choices


class MemberAddForm(forms.Form):
    """On the members page beside the invitation form: its own ids (add_user, add_role)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "add_%s")
        super().__init__(*args, **kwargs)

    user = forms.CharField(label="Username or e-mail", max_length=254)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.ANNOTATOR)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class InvitationForm(forms.Form):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "invite_%s")  # ids invite_email, invite_role, invite_days
        super().__init__(*args, **kwargs)

    email = forms.EmailField(
        label="E-mail (optional)", required=False, help_text="Given an address, Stepmark e-mails the link to it."
    )
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.ANNOTATOR)
    days = forms.IntegerField(
        label="Valid for (days)", min_value=1, max_value=INVITATION_MAX_DAYS, initial=INVITATION_DAYS
    )


class SignupForm(forms.Form):
    """A new person's account, from an invitation: Django's password validators apply."""

    username = forms.CharField(max_length=150, help_text="Letters, digits and @ . + - _ only.")
    password1 = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(
        label="Password again", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        UnicodeUsernameValidator()(username)
        return username

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") and cleaned.get("password2") and cleaned["password1"] != cleaned["password2"]:
            self.add_error("password2", "The two passwords differ.")
        return cleaned
