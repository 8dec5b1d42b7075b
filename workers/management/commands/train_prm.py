"""manage.py train_prm --project NAME --backbone DIR --output DIR [--max-steps N] [--batch-size GLOBAL] [--seed S] [--lora]

Trains exactly as the "train" job does (workers.train_runner.training_run_execute), in this process or
in every process of `accelerate launch` / `torchrun`: the global batch is kept (per-process batch =
global / processes, gradient accumulation under --micro-batch-size), each process trains on its
share of every batch, and only the main process records the run, writes checkpoints, shows the
progress bar and prints the final JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from prm.core.merge import MergePolicy
from prm.core.training_config import TrainConfig, split_global_batch
from prm.models import TrainingRun


def _json_argument(text: str | None, name: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{name} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CommandError(f"{name} must be a JSON object")
    return value


class Command(BaseCommand):
    help = "Train a PRM on a project's merged labels (runs unchanged under accelerate launch and torchrun)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project name.")
        parser.add_argument("--backbone", required=True, help="Folder of the vision-language backbone.")
        parser.add_argument("--output", required=True, help="Folder for checkpoints and the final model.")
        parser.add_argument("--max-steps", type=int, help="Stop after this many optimizer steps.")
        parser.add_argument("--epochs", type=int, help="Passes over the training set (default 1).")
        parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size,
                            help="GLOBAL batch: conversations per optimizer step over all processes.")
        parser.add_argument("--micro-batch-size", type=int,
                            help="Conversations per forward pass on each process (default: its whole share).")
        parser.add_argument("--learning-rate", type=float, help="Peak learning rate (default 1e-5).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the data order and LoRA weights.")
        parser.add_argument("--lora", action="store_true", help="Train a LoRA adapter instead of every weight.")
        parser.add_argument("--lora-r", type=int, help="LoRA rank (16).")
        parser.add_argument("--lora-alpha", type=int, help="LoRA alpha (32).")
        parser.add_argument("--lora-target-modules", help='"all-linear" or comma-separated module names.')
        parser.add_argument("--config", help="Other training settings as JSON (TrainConfig fields).")
        parser.add_argument("--merge-policy", help="Merge policy as JSON (prm.training_data.MergePolicy fields).")

    def handle(self, *args, **options):
        import torch
        from accelerate import PartialState

        from workers.errors import PermanentJobError
        from workers.train_runner import training_run_execute
        from workers.training_services import training_run_create

        project = Project.objects.filter(name=options["project"]).first()
        if project is None:
            raise CommandError(f"no project named {options['project']!r}")
        if not Path(options["backbone"]).is_dir():
            raise CommandError(f"--backbone {options['backbone']}: no such folder")
        # Joins the process group that accelerate launch / torchrun set up (a no-op alone);
        # train_prm's Accelerator shares this state.
        state = PartialState(cpu=not torch.cuda.is_available())
        try:
            batch_size, accumulation = split_global_batch(
                global_batch=options["batch_size"], num_processes=state.num_processes,
                micro_batch=options["micro_batch_size"],
            )
            settings = _json_argument(options["config"], "--config")
            settings.update(backbone=str(Path(options["backbone"]).resolve()), batch_size=batch_size,
                            gradient_accumulation_steps=accumulation, seed=options["seed"])
            named = {"max_steps": "max_steps", "epochs": "epochs", "learning_rate": "learning_rate",
                     "lora_r": "lora_r", "lora_alpha": "lora_alpha", "lora_target_modules": "lora_target_modules"}
            settings.update({field: options[option] for option, field in named.items() if options[option] is not None})
            if options["lora"]:
                settings["lora"] = True
            config = TrainConfig.from_dict(settings)
            policy = MergePolicy.from_dict(_json_argument(options["merge_policy"], "--merge-policy"))
        except (ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from exc

        output = Path(options["output"]).resolve()
        main = state.is_main_process
        if main:
            run = training_run_create(project=project, config=config, merge_policy=policy, output_dir=output)
        else:
            run = TrainingRun(project=project, config=config.to_dict(), merge_policy=policy.to_dict())
        bar = None

        def on_start(total_steps: int, first_step: int) -> None:
            nonlocal bar
            from tqdm import tqdm

            bar = tqdm(total=total_steps, initial=first_step, desc=f"training run {run.pk}", unit="step",
                       file=sys.stderr, dynamic_ncols=True)

        def progress(step: int, loss: float, lr: float, tokens_per_s: float) -> None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:.0f}")

        try:
            result = training_run_execute(run=run, output_dir=output, record=main, on_start=on_start, progress=progress)
        except PermanentJobError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if bar is not None:
                bar.close()
        if not main:
            return
        timed = result.history[1:] or result.history  # the first step also pays for warm-up
        summary = {
            "run_id": run.pk,
            "steps": result.steps,
            "final_loss": result.history[-1]["loss"] if result.history else None,
            "tokens_per_s": sum(entry["tokens_per_s"] for entry in timed) / max(len(timed), 1),
            "num_processes": state.num_processes,
            "global_batch": options["batch_size"],
            "per_process_batch": batch_size,
            "gradient_accumulation_steps": accumulation,
            "model_dir": str(result.model_dir),
        }
        self.stdout.write(json.dumps(summary))
