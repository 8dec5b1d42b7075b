"""manage.py train_prm: the train job's path from the command line, alone, under `accelerate launch`
and under torchrun, each with two CPU processes (gloo); same seed and global batch give the same
loss, one run is recorded per command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from annotation.models import Project
from prm.core.tiny_models import build_tiny_backbone
from prm.core.training_config import split_global_batch
from prm.models import PRMVersion, TrainingRun
from tests.test_prm_training import _color_project

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env(settings) -> dict:
    """The test database and media folder, for processes that are not this one."""
    from django.db import connection

    from stepmark.env import database_url

    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(db),
        MEDIA_ROOT=str(settings.MEDIA_ROOT), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
    )
    return env


def _train(launcher: list[str], *, env: dict, backbone: Path, output: Path) -> dict:
    command = [*launcher, str(ROOT / "manage.py"), "train_prm", "--project", "cli training", "--backbone",
               str(backbone), "--output", str(output), "--max-steps", "3", "--batch-size", "4", "--seed", "7",
               "--learning-rate", "2e-3", "--merge-policy", '{"validation_fraction": 0.2}']
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    json_lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1, done.stdout  # only the main process reports
    assert "training run" in done.stderr and "3/3" in done.stderr  # the progress bar
    return json.loads(json_lines[0])


@pytest.mark.django_db(transaction=True)
def test_one_process_and_two_under_accelerate_launch_or_torchrun_train_alike_and_record_one_run(settings, tmp_path):
    project = Project.objects.create(name="cli training")
    _color_project(project, 10)  # 8 training items, 2 held out
    backbone = build_tiny_backbone("qwen2_vl", tmp_path / "backbone")
    env = _child_env(settings)

    alone = _train([sys.executable], env=env, backbone=backbone, output=tmp_path / "one")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(ROOT / "configs/accelerate/cpu_ddp.yaml"), "--num_processes", "2",
              "--main_process_port", str(_free_port())]
    pair = _train(launch, env=env, backbone=backbone, output=tmp_path / "two")
    # torchrun as the README spells it: no accelerate config, no extra env. The command sees no GPU,
    # so it joins torchrun's group (RANK, WORLD_SIZE, MASTER_ADDR/PORT) over gloo on the CPU.
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    torch_pair = _train(torchrun, env=env, backbone=backbone, output=tmp_path / "torchrun")

    assert alone["num_processes"] == 1 and pair["num_processes"] == torch_pair["num_processes"] == 2
    assert (alone["per_process_batch"], pair["per_process_batch"], torch_pair["per_process_batch"]) == (4, 2, 2)
    assert alone["global_batch"] == pair["global_batch"] == torch_pair["global_batch"] == 4
    assert alone["steps"] == pair["steps"] == torch_pair["steps"] == 3
    for summary in (alone, pair, torch_pair):
        assert summary["tokens_per_s"] > 0
    print(f"\nfinal loss: one process {alone['final_loss']:.6f}, accelerate launch x2 {pair['final_loss']:.6f}, "
          f"torchrun x2 {torch_pair['final_loss']:.6f}")
    for launched in (pair, torch_pair):
        assert abs(launched["final_loss"] - alone["final_loss"]) <= 0.02 * alone["final_loss"]
    runs = {run.checkpoint_dir: run for run in TrainingRun.objects.filter(project=project)}
    outputs = {tmp_path / "one": alone, tmp_path / "two": pair, tmp_path / "torchrun": torch_pair}
    assert set(runs) == {str(output) for output in outputs}  # one record per command, not per process
    for output, summary in outputs.items():
        run = runs[str(output)]
        assert run.pk == summary["run_id"] and run.status == "done" and run.step == 3
        assert [entry["step"] for entry in run.history] == [1, 2, 3]
        assert abs(run.history[-1]["loss"] - summary["final_loss"]) < 1e-9
        assert sorted(p.name for p in output.iterdir()) == ["checkpoint-3", "final"]
        assert PRMVersion.objects.filter(created_from=run).count() == 1


def test_the_global_batch_splits_over_processes_with_accumulation():
    assert split_global_batch(global_batch=8, num_processes=1) == (8, 1)
    assert split_global_batch(global_batch=8, num_processes=2) == (4, 1)
    assert split_global_batch(global_batch=8, num_processes=2, micro_batch=1) == (1, 4)
    with pytest.raises(ValueError, match="does not split evenly over 3"):
        split_global_batch(global_batch=8, num_processes=3)
    with pytest.raises(ValueError, match="micro-batch of 3"):
        split_global_batch(global_batch=8, num_processes=1, micro_batch=3)


@pytest.mark.django_db
def test_bad_arguments_name_the_problem(tmp_path):
    Project.objects.create(name="cli training")
    with pytest.raises(CommandError, match="no project named 'nope'"):
        call_command("train_prm", project="nope", backbone=str(tmp_path), output=str(tmp_path / "o"))
    with pytest.raises(CommandError, match="no such folder"):
        call_command("train_prm", project="cli training", backbone=str(tmp_path / "missing"), output=str(tmp_path / "o"))
    with pytest.raises(CommandError, match="--config is not JSON"):
        call_command("train_prm", project="cli training", backbone=str(tmp_path), output=str(tmp_path / "o"),
                     config="{oops")
    with pytest.raises(CommandError, match="no solution of this project has a labelled step"):
        call_command("train_prm", project="cli training", backbone=str(tmp_path), output=str(tmp_path / "o"))


def test_the_loss_is_the_mean_over_the_global_batch_however_it_is_split(tmp_path):
    """Batch 4 in one pass and batch 1 accumulated 4 times train alike, even when conversations carry
    different numbers of labelled steps (a mean of per-pass means would weight them differently)."""
    from prm.core.conversation import encode_conversation, label_token_ids, load_processor
    from prm.core.training import train_prm
    from prm.core.training_config import TrainConfig
    from tests.test_prm_training import COLORS, QUESTION

    backbone = build_tiny_backbone("qwen2_vl", tmp_path / "backbone")
    processor = load_processor(backbone)
    label_ids = label_token_ids(processor)
    examples = []
    for i in range(8):
        shown, said = ("red", "green")[i % 2], ("red", "green")[(i // 2) % 2]
        image = Image.new("RGB", (56, 56), COLORS[shown])
        labels = [None if i % 3 else True, said == shown, None if i % 4 else False]
        examples.append(encode_conversation(
            processor, question=QUESTION, steps=["Look at the image.", f"The square is {said}.", "Done."],
            images=[image], step_labels=labels, label_ids=label_ids,
        ))
    losses = {}
    for batch, accumulation in ((4, 1), (1, 4)):
        config = TrainConfig(backbone=str(backbone), learning_rate=2e-3, weight_decay=0.0, max_steps=2,
                             batch_size=batch, gradient_accumulation_steps=accumulation, warmup_ratio=0.0)
        result = train_prm(config=config, examples=examples, output_dir=tmp_path / f"b{batch}")
        losses[batch] = [entry["loss"] for entry in result.history]
    assert losses[4] == pytest.approx(losses[1], rel=1e-4)
