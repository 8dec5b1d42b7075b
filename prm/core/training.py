"""The PRM training loop (no Django): VisualPRM conversations in, a scorer-ready model folder out.

- Loss only at the label tokens of labelled steps (EncodedConversation.labels != IGNORE_INDEX);
  unlabelled steps stay in the conversation as "+" placeholders with no loss.
- `label_loss="pair"` (the default) is cross entropy over the ("+", "-") logits at the position that
  predicts each label. That is exactly the negative log-likelihood of the score PRMScorer reads
  (softmax over the same two logits), so training optimises what is used; the rest of the vocabulary
  gets no gradient. `"vocab"` is plain SFT cross entropy over the vocabulary, as VisualPRM trains;
  it also pushes probability off every other token, which the score never reads.
- AdamW, linear warm-up then cosine to 0; accelerate (`Accelerator`, `prepare`, `backward`) so the
  same code runs on CPU, one GPU, or several GPUs under `accelerate launch`/torchrun.
- A checkpoint every `checkpoint_every` optimizer steps holds the model (or LoRA adapter) and
  processor (`model/`), optimizer, scheduler, RNG state, step and history (`trainer_state.pt`) and
  the resolved TrainConfig (`config.json`). A restarted run resumes from the latest one, at the same
  place in the same data order, so it ends at the same step with a continuous history.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from prm.core.conversation import (
    IGNORE_INDEX,
    EncodedConversation,
    collate_conversations,
    label_token_ids,
    load_processor,
)
from prm.core.training_config import TrainConfig

ProgressCallback = Callable[[int, float, float, float], None]  # (step, loss, lr, tokens_per_s)
StartCallback = Callable[[int, int], None]  # (total_steps, first_step): first_step > 0 after a resume

CHECKPOINT_PREFIX = "checkpoint-"
FINAL_DIRECTORY = "final"
STATE_FILE = "trainer_state.pt"


@dataclass
class TrainResult:
    model_dir: Path  # a full model + processor folder that PRMScorer loads
    steps: int
    total_steps: int
    resumed_from: int  # 0 for a fresh run
    history: list[dict] = field(default_factory=list)


def steps_per_epoch(*, num_examples: int, config: TrainConfig, num_processes: int = 1) -> int:
    micro_batches = math.ceil(num_examples / (config.batch_size * num_processes))
    return math.ceil(micro_batches / config.gradient_accumulation_steps)


def total_optimizer_steps(*, num_examples: int, config: TrainConfig, num_processes: int = 1) -> int:
    if config.max_steps is not None:
        return config.max_steps
    return config.epochs * steps_per_epoch(num_examples=num_examples, config=config, num_processes=num_processes)


def warmup_cosine(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear from 0 over the warm-up steps, then cosine down to 0 at `total_steps`."""
    warmup = math.ceil(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def resolve_for_this_machine(config: TrainConfig) -> TrainConfig:
    """`config` with bf16 and gradient checkpointing decided for the GPU (or CPU) of this machine."""
    on_gpu = torch.cuda.is_available()
    return config.resolved(
        device_type="cuda" if on_gpu else "cpu", bf16_supported=on_gpu and torch.cuda.is_bf16_supported()
    )


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = sorted(
        (p for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).exists()),
        key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)),
    )
    return checkpoints[-1] if checkpoints else None


def _micro_batches(*, num_examples: int, epoch: int, config: TrainConfig, num_processes: int, process_index: int):
    """This process's example indices for each micro-batch of `epoch`: a fixed permutation per
    (seed, epoch), so a resumed run sees the batches the killed one would have seen."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(num_examples, generator=generator).tolist()
    global_size = config.batch_size * num_processes
    batches = []
    for start in range(0, num_examples, global_size):
        # Wrap around at the end so every process gets a full share (DDP needs every rank to step).
        indices = [order[(start + k) % num_examples] for k in range(global_size)] if num_processes > 1 else order[start : start + global_size]
        batches.append(indices[process_index * config.batch_size : (process_index + 1) * config.batch_size])
    return batches


def _label_loss(logits: torch.Tensor, targets: torch.Tensor, *, config: TrainConfig, pair_ids: torch.Tensor) -> torch.Tensor:
    """SUMMED loss over labelled answers; logits (n, vocab), targets (n,) token ids of "+"/"-"."""
    if config.label_loss == "vocab":
        return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    pair_logits = logits[:, pair_ids].float()  # column 0: "+", column 1: "-"
    return torch.nn.functional.cross_entropy(pair_logits, (targets == pair_ids[1]).long(), reduction="sum")


def _labelled_answers(conversations: Sequence[EncodedConversation]) -> int:
    return sum(int((c.labels != IGNORE_INDEX).sum()) for c in conversations)


def _batch_loss(model, conversations: list[EncodedConversation], *, config, pad_token_id, pair_ids, device):
    batch = collate_conversations(conversations, pad_token_id=pad_token_id)
    rows, positions = torch.nonzero(batch.labels != IGNORE_INDEX, as_tuple=True)
    if len(rows) == 0:
        return None, 0
    targets = batch.labels[rows, positions]
    answer_positions = positions - 1  # the logits at i - 1 predict the token at i
    # Project only the answer positions onto the vocabulary (the union across rows), not all tokens.
    keep = torch.unique(answer_positions)
    column = torch.searchsorted(keep, answer_positions)
    inputs = {key: value.to(device) for key, value in batch.model_inputs.items()}
    logits = model(**inputs, logits_to_keep=keep.to(device)).logits  # (batch, len(keep), vocab)
    picked = logits[rows.to(device), column.to(device)]
    loss = _label_loss(picked, targets.to(device), config=config, pair_ids=pair_ids)
    return loss, int(batch.model_inputs["attention_mask"].sum())


def _rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _load_model(config: TrainConfig, *, adapter_dir: Path | None, dtype: torch.dtype):
    from transformers import AutoModelForImageTextToText

    # Full fine-tuning resumes from the checkpoint's weights; LoRA from the backbone plus the adapter.
    source = adapter_dir if adapter_dir is not None and not config.lora else config.backbone
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if not config.lora:
        return model
    from peft import LoraConfig, PeftModel, get_peft_model

    if config.gradient_checkpointing:
        model.enable_input_require_grads()  # frozen embeddings would otherwise cut the gradient path
    if adapter_dir is not None:
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    targets = config.lora_target_modules
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()],
    )
    return get_peft_model(model, lora)


def _save_checkpoint(*, output_dir: Path, step: int, model, processor, optimizer, scheduler, history, config) -> Path:
    """Write the checkpoint beside its final name, then rename: a kill mid-save leaves no half checkpoint."""
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    partial = output_dir / f".partial-{CHECKPOINT_PREFIX}{step}"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial / "model")
    processor.save_pretrained(partial / "model")
    torch.save(
        {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
         "rng": _rng_state(), "history": history},
        partial / STATE_FILE,
    )
    (partial / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    checkpoints = sorted(output_dir.glob(f"{CHECKPOINT_PREFIX}*"), key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)))
    for old in checkpoints[: -config.checkpoints_kept]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _save_final(*, output_dir: Path, model, processor, config: TrainConfig) -> Path:
    final = output_dir / FINAL_DIRECTORY
    shutil.rmtree(final, ignore_errors=True)
    if config.lora:
        model = model.merge_and_unload()  # PRMScorer loads a plain model folder
    model.save_pretrained(final)
    processor.save_pretrained(final)
    (final / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    return final


def train_prm(
    *,
    config: TrainConfig,
    examples: Sequence[EncodedConversation],
    output_dir: Path,
    progress: ProgressCallback | None = None,
    on_start: StartCallback | None = None,
) -> TrainResult:
    """Train `config.backbone` on `examples`; resume from `output_dir`'s latest checkpoint if any."""
    from accelerate import Accelerator

    if not examples:
        raise ValueError("no training examples")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config = resolve_for_this_machine(config)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    # Mixed precision keeps fp32 master weights; bf16 only autocasts the forward pass.
    accelerator = Accelerator(cpu=device_type == "cpu", mixed_precision="bf16" if config.bf16 else "no")

    checkpoint = latest_checkpoint(output_dir)
    state = torch.load(checkpoint / STATE_FILE, weights_only=False) if checkpoint else None
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    processor = load_processor(config.backbone)
    label_ids = label_token_ids(processor)
    pad_token_id = processor.tokenizer.pad_token_id
    if pad_token_id is None:
        pad_token_id = processor.tokenizer.eos_token_id
    model = _load_model(config, adapter_dir=checkpoint / "model" if checkpoint else None, dtype=torch.float32)
    model.train()

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
    )
    num_processes, process_index = accelerator.num_processes, accelerator.process_index
    per_epoch = steps_per_epoch(num_examples=len(examples), config=config, num_processes=num_processes)
    total_steps = total_optimizer_steps(num_examples=len(examples), config=config, num_processes=num_processes)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, config.warmup_ratio))
    # The scheduler is not prepared: accelerate would step it once per process, and total_steps already
    # counts global batches.
    model, optimizer = accelerator.prepare(model, optimizer)

    step, history = 0, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        step, history = state["step"], list(state["history"])
    resumed_from = step
    if on_start is not None and accelerator.is_main_process:
        on_start(total_steps, step)

    pair_ids = torch.tensor([label_ids.positive, label_ids.negative], device=accelerator.device)
    accumulation = config.gradient_accumulation_steps
    unwrapped = accelerator.unwrap_model(model)
    while step < total_steps:
        epoch, step_in_epoch = divmod(step, per_epoch)
        batches = _micro_batches(
            num_examples=len(examples), epoch=epoch, config=config,
            num_processes=num_processes, process_index=process_index,
        )
        group_indices = batches[step_in_epoch * accumulation : (step_in_epoch + 1) * accumulation]
        group = [[examples[i] for i in indices] for indices in group_indices]
        started, tokens, loss_sum = time.perf_counter(), 0, 0.0
        # The loss is the mean over every labelled answer of the GLOBAL batch, whatever its split into
        # processes and accumulated micro-batches: one process with batch 8 and two with 4 each train
        # alike. DDP averages gradients over processes, hence the factor num_processes.
        local_answers = torch.tensor(float(sum(_labelled_answers(b) for b in group)), device=accelerator.device)
        answers = float(accelerator.reduce(local_answers, "sum"))
        scale = num_processes / max(answers, 1.0)
        for position, conversations in enumerate(group):
            # Gradients are all-reduced only on the last forward pass of the optimizer step.
            sync = position == len(group) - 1
            context = accelerator.no_sync(model) if not sync and num_processes > 1 else nullcontext()
            with context, accelerator.autocast():
                loss, batch_tokens = _batch_loss(
                    model, conversations, config=config,
                    pad_token_id=pad_token_id, pair_ids=pair_ids, device=accelerator.device,
                )
                if loss is None:  # no labelled step in this batch: keep DDP ranks in step with a zero loss
                    loss = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
                accelerator.backward(loss * scale)
            loss_sum += float(loss.detach())
            tokens += batch_tokens
        if config.max_grad_norm is not None:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        elapsed = time.perf_counter() - started
        totals = accelerator.reduce(torch.tensor([loss_sum, float(tokens)], device=accelerator.device), "sum")
        mean_loss = float(totals[0]) / max(answers, 1.0)
        tokens_per_s = float(totals[1]) / elapsed if elapsed > 0 else 0.0
        history.append({"step": step, "loss": mean_loss, "lr": lr, "tokens_per_s": tokens_per_s, "time": time.time()})
        if step % config.checkpoint_every == 0 or step == total_steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                _save_checkpoint(
                    output_dir=output_dir, step=step, model=accelerator.unwrap_model(model), processor=processor,
                    optimizer=optimizer, scheduler=scheduler, history=history, config=config,
                )
        if progress is not None and accelerator.is_main_process:
            progress(step, mean_loss, lr, tokens_per_s)

    accelerator.wait_for_everyone()
    model_dir = output_dir / FINAL_DIRECTORY
    if accelerator.is_main_process:
        unwrapped.eval()
        model_dir = _save_final(output_dir=output_dir, model=unwrapped, processor=processor, config=config)
    accelerator.wait_for_everyone()
    return TrainResult(model_dir=model_dir, steps=step, total_steps=total_steps, resumed_from=resumed_from, history=history)

