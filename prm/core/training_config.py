"""The settings of one PRM training run, recorded in full with the run (TrainingRun.config) and in
every checkpoint (config.json), so a run can be reproduced and resumed exactly.

Defaults follow VisualPRM (InternVL2.5-8B fine-tuned on VisualPRM400K): AdamW, lr 1e-5, weight
decay 0.05, 5% linear warm-up then cosine decay to 0, one epoch. Those suit a pretrained 8B model;
a tiny randomly initialised test backbone needs a far higher learning rate and several epochs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from prm.core.prompts import DEFAULT_QUESTION_FORMAT, DEFAULT_SYSTEM_PROMPT, QUESTION_FORMATS, SYSTEM_PROMPTS

LabelLoss = Literal["pair", "vocab"]
LABEL_LOSSES: tuple[str, ...] = ("pair", "vocab")


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class TrainConfig:
    backbone: str = _help("Folder (or hub name, when the hub is reachable) of the vision-language backbone.", "")
    learning_rate: float = _help("Peak AdamW learning rate (VisualPRM: 1e-5).", 1e-5)
    weight_decay: float = _help("AdamW weight decay (VisualPRM: 0.05).", 0.05)
    adam_beta1: float = _help("AdamW beta1.", 0.9)
    adam_beta2: float = _help("AdamW beta2.", 0.999)
    warmup_ratio: float = _help("Share of optimizer steps spent warming up linearly from 0 (VisualPRM: 5%).", 0.05)
    epochs: int = _help("Passes over the training set (VisualPRM: 1).", 1)
    max_steps: int | None = _help("Stop after this many optimizer steps (None: run every epoch).", None)
    batch_size: int = _help("Conversations per forward pass on each device.", 8)
    gradient_accumulation_steps: int = _help("Forward passes summed into one optimizer step.", 1)
    max_grad_norm: float | None = _help("Clip the gradient norm to this (None: no clipping).", 1.0)
    label_loss: LabelLoss = _help(
        'Loss at each labelled answer: "pair" = cross entropy over the ("+", "-") logits, exactly the '
        'score the PRM is read with; "vocab" = cross entropy over the whole vocabulary (plain SFT).',
        "pair",
    )
    lora: bool = _help("Train a LoRA adapter (peft) instead of every weight; merged into the saved model.", False)
    lora_r: int = _help("LoRA rank.", 16)
    lora_alpha: int = _help("LoRA alpha (scale = alpha / r).", 32)
    lora_dropout: float = _help("Dropout on the LoRA input.", 0.05)
    lora_target_modules: str = _help('peft target_modules: "all-linear" or comma-separated module names.', "all-linear")
    bf16: bool | None = _help("bf16 autocast; None: on when the device supports it (CUDA with bf16).", None)
    gradient_checkpointing: bool | None = _help("Recompute activations in backward; None: on with a GPU.", None)
    seed: int = _help("Seed of the weights LoRA adds, dropout and the data order.", 0)
    max_steps_per_solution: int = _help("Longer solutions are merged into this many steps (VisualPRM: 12).", 12)
    system_prompt: str = _help(
        'PRM system prompt: "visualprm" (the released pipeline\'s, verbatim) or "stepmark" (a shorter text).',
        DEFAULT_SYSTEM_PROMPT,
    )
    prm_question: str = _help(
        'What the PRM reads after "### Question:": "policy_prompt" (the policy\'s prompt, instruction '
        'included, as the released pipeline) or "question" (the bare question and its options).',
        DEFAULT_QUESTION_FORMAT,
    )
    checkpoint_every: int = _help("Save a resumable checkpoint every N optimizer steps.", 50)
    checkpoints_kept: int = _help("How many of the latest checkpoints stay on disk.", 2)

    def __post_init__(self):
        problems = []
        if self.learning_rate <= 0:
            problems.append("learning_rate must be positive")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "checkpoint_every",
                     "checkpoints_kept", "max_steps_per_solution", "lora_r"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max_steps must be at least 1 or None")
        if self.label_loss not in LABEL_LOSSES:
            problems.append(f"label_loss must be one of {LABEL_LOSSES}")
        if self.system_prompt not in SYSTEM_PROMPTS:
            problems.append(f"system_prompt must be one of {tuple(SYSTEM_PROMPTS)}")
        if self.prm_question not in QUESTION_FORMATS:
            problems.append(f"prm_question must be one of {QUESTION_FORMATS}")
        if problems:
            raise ValueError("; ".join(problems))

    def resolved(self, *, device_type: str, bf16_supported: bool) -> TrainConfig:
        """This config with the automatic choices (None) decided for the device that will train."""
        on_gpu = device_type == "cuda"
        return dataclasses.replace(
            self,
            bf16=(on_gpu and bf16_supported) if self.bf16 is None else self.bf16,
            gradient_checkpointing=on_gpu if self.gradient_checkpointing is None else self.gradient_checkpointing,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def help_texts(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


def split_global_batch(*, global_batch: int, num_processes: int, micro_batch: int | None = None) -> tuple[int, int]:
    """(per-process batch, gradient accumulation steps) that keep `global_batch` conversations an
    optimizer step on `num_processes` processes, each forward pass at most `micro_batch` long
    (default: the whole per-process share at once)."""
    if global_batch < 1 or num_processes < 1:
        raise ValueError("the global batch and the number of processes must be at least 1")
    if global_batch % num_processes:
        raise ValueError(f"a global batch of {global_batch} does not split evenly over {num_processes} processes")
    share = global_batch // num_processes
    micro = share if micro_batch is None else min(micro_batch, share)
    if micro < 1 or share % micro:
        raise ValueError(f"a micro-batch of {micro_batch} does not divide the per-process batch of {share}")
    return micro, share // micro
