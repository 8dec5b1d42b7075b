"""Starting LLM-judge label jobs: a judge model from the operator's server list labels every step."""

from __future__ import annotations

from annotation.models import Project
from prm.core.judge import DEFAULT_JUDGE_PROMPT, prompt_problems, prompt_version
from workers.generation.base import backend_label
from workers.generation.openai_backend import generation_servers
from workers.models import Job
from workers.selection import project_solution_ids, solution_chunks
from workers.services import job_create

JUDGE_SOLUTIONS_PER_CHUNK = 16
JUDGE_MAX_TOKENS = 2048


def project_judge_prompt(project: Project) -> str:
    """The prompt a judge job of `project` uses by default: the project's own, else the default."""
    return project.judge_prompt.strip() or DEFAULT_JUDGE_PROMPT


def judge_prompt_save(*, project: Project, prompt: str) -> Project:
    """Keep `prompt` as the project's judge prompt (the default one is stored as empty)."""
    text = prompt.strip()
    problems = prompt_problems(text)
    if problems:
        raise ValueError("; ".join(problems))
    project.judge_prompt = "" if text == DEFAULT_JUDGE_PROMPT.strip() else text
    project.save(update_fields=["judge_prompt"])
    return project


def judge_label_source(model: str) -> str:
    """The AutoLabel source of a judge's labels: the served model's short name."""
    return backend_label({"model": model})


def judge_job_start(
    *,
    project: Project,
    server: str,
    solution_ids: list[int] | None = None,
    prompt: str | None = None,
    temperature: float = 0.0,
    max_tokens: int = JUDGE_MAX_TOKENS,
    concurrency: int = 8,
    user=None,
    solutions_per_chunk: int = JUDGE_SOLUTIONS_PER_CHUNK,
) -> Job:
    """Ask the judge served by `server` (a name in STEPMARK_GENERATION_SERVERS) to label every step
    of the project's solutions (all, or `solution_ids`) +1/0/-1 with a reason.

    Stores AutoLabel(kind="judge", source=<model>, value, reason, prompt_version) per step of each
    solution whose reply parses (a rerun replaces that judge's labels); replies that do not parse
    are skipped and counted by why. The prompt is fixed at start (`prompt`, else the project's).
    Raises ValueError for an unlisted server, a prompt without its placeholders, ids outside the project.
    """
    entry = generation_servers().get(server)
    if entry is None:
        raise ValueError(f"no generation server named {server!r} is configured (STEPMARK_GENERATION_SERVERS)")
    text = (prompt or "").strip() or project_judge_prompt(project)
    problems = prompt_problems(text)
    if problems:
        raise ValueError("; ".join(problems))
    if not 0 <= temperature <= 2:
        raise ValueError(f"temperature must be in [0, 2], got {temperature}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    ids = project_solution_ids(project=project, solution_ids=solution_ids, with_steps=True)
    return job_create(
        kind=Job.Kind.JUDGE,
        project=project,
        params={
            "server": server,
            "model": entry["model"],
            "source": judge_label_source(entry["model"]),
            "prompt": text,
            "prompt_version": prompt_version(text),
            "temperature": temperature,
            "max_tokens": max_tokens,
            "concurrency": max(1, concurrency),
        },
        chunks=solution_chunks(ids, per_chunk=solutions_per_chunk),
        user=user,
    )
