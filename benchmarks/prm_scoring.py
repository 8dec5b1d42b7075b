"""PRM scoring speed: per-step reference scoring vs one-pass scoring vs batched Best-of-N.

    .venv/bin/python benchmarks/prm_scoring.py [--model small|tiny|all] [--model-dir BACKBONE]
        [--questions 1] [--solutions-per-question 8] [--steps 10] [--repeats 1] [--train-step]
    .venv/bin/python benchmarks/prm_scoring.py --config-of qwen2.5-vl-7b --dtype bf16 --device cuda \\
        [--peak-tflops 989] [--train-step --lora]

Synthetic data: each question has one image and N solutions of `--steps` steps of 30-60 tokens
each. After a warm-up, every mode scores the same solutions and reports steps/s:
  per-step   ReferenceScorer: one forward pass per step over the conversation cut after that step,
             so the prefix (system prompt, image, question, earlier steps) is re-encoded every time;
  one-pass   PRMScorer, one solution per forward pass, every step scored at its answer position;
  best-of-N  PRMScorer, the N solutions of one question in one right-padded batch.
Tokens/s counts the real (unpadded) tokens the model is given; on CUDA the table also shows the
share of `--peak-tflops` reached, with FLOPs = 2 * parameters * tokens (6x for a training step).

Models (random weights, nothing downloaded): "small" = a Qwen2-VL of hidden 384 / 6 layers, large
enough that compute rather than Python dominates; "tiny" = prm.core.tiny_models' test backbone;
`--config-of qwen2.5-vl-7b` = Qwen2.5-VL-7B-Instruct's published architecture, built in memory on
the device (16 GB of random bf16 weights are not worth writing to disk and reading back).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from prm.core.conversation import (  # noqa: E402
    encode_conversation,
    image_only_processor,
    label_token_ids,
    load_processor,
)
from prm.core.scoring import PRMScorer, ReferenceScorer  # noqa: E402
from prm.core.tiny_models import QWEN2_VL_CHAT_TEMPLATE, build_tiny_qwen2_vl  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
H100_SXM_BF16_DENSE_TFLOPS = 989.0
STEP_TOKENS = (30, 60)

_WORDS = (
    "the area of triangle is base height so we compute x y angle circle radius then answer correct "
    "sum of both sides equals therefore option value figure shows line segment length point middle"
).split()


# ----------------------------------------------------------------------------- models


def small_qwen2_vl_config(tokenizer):
    """A Qwen2-VL of ~10M parameters (hidden 384, 6 layers; 4 vision blocks) around the tiny tokenizer."""
    from transformers import Qwen2VLConfig

    ids = tokenizer.convert_tokens_to_ids
    return Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 384,
            "intermediate_size": 1024,
            "num_hidden_layers": 6,
            "num_attention_heads": 6,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # head_dim 64: the temporal/height/width rotary sections add up to head_dim / 2.
            "rope_parameters": {"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 10000.0},
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 4,
            "embed_dim": 128,
            "hidden_size": 384,
            "num_heads": 4,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def qwen25_vl_7b_config(tokenizer, *, text_layers: int | None = None, vision_depth: int | None = None):
    """Qwen2.5-VL-7B-Instruct's published hyper-parameters; the special token ids are the local
    tokenizer's (all below the 152064-entry vocabulary, so the embedding shapes stay the real ones)."""
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": text_layers or 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "hidden_act": "silu",
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": vision_depth or 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 3584,
            "hidden_act": "silu",
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2,
        },
        tie_word_embeddings=False,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def _processor_with_image_side(directory: Path, *, side: int, processor_class_name: str = "Qwen2VLProcessor"):
    """The tiny backbone's tokenizer and template with images resized to side x side pixels
    ((side / 28)^2 image tokens), saved into `directory`."""
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    tokenizer = load_processor(directory).tokenizer
    processor = image_only_processor(
        getattr(transformers, processor_class_name),
        image_processor=Qwen2VLImageProcessorPil(min_pixels=side * side, max_pixels=side * side),
        tokenizer=tokenizer,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(directory)
    return processor


def build_small_qwen2_vl(directory: Path, *, seed: int = 0) -> Path:
    """The tiny backbone's folder with a 224x224-pixel image processor (64 image tokens) and the
    small model config, random weights."""
    from transformers import AutoModelForImageTextToText

    build_tiny_qwen2_vl(directory, seed=seed)
    processor = _processor_with_image_side(directory, side=224)
    torch.manual_seed(seed)
    AutoModelForImageTextToText.from_config(small_qwen2_vl_config(processor.tokenizer)).save_pretrained(directory)
    return directory


def _scorer_around(cls, *, model, processor, directory: Path, device: torch.device):
    """A PRMScorer/ReferenceScorer over an in-memory model: the same attributes _Backbone.__init__
    sets from a folder, without writing the weights to disk."""
    scorer = cls.__new__(cls)
    scorer.directory, scorer.device, scorer.processor, scorer.model = directory, device, processor, model
    scorer.label_ids = label_token_ids(processor)
    tokenizer = processor.tokenizer
    scorer.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if cls is PRMScorer:
        scorer.aggregation, scorer.batch_size = "mean", 8
    return scorer


@dataclass
class Subject:
    name: str
    reference: ReferenceScorer
    one_pass: PRMScorer
    image_side: int

    @property
    def model(self):
        return self.one_pass.model

    @property
    def processor(self):
        return self.one_pass.processor


def subject_from_directory(name: str, directory: Path, *, device, dtype, image_side: int) -> Subject:
    one_pass = PRMScorer(directory, device=device, dtype=dtype, batch_size=8)
    reference = ReferenceScorer(directory, device=device, dtype=dtype)
    reference.model = one_pass.model  # one copy of the weights, used by both scorers
    return Subject(name=name, reference=reference, one_pass=one_pass, image_side=image_side)


def subject_qwen25_vl_7b(workdir: Path, *, device, dtype, text_layers=None, vision_depth=None) -> Subject:
    from transformers import AutoModelForImageTextToText

    build_tiny_qwen2_vl(workdir, seed=0)  # tokenizer and template only
    side = 448  # 256 image tokens, a typical MATH-V figure at Qwen2.5-VL's resolution
    processor = _processor_with_image_side(workdir, side=side, processor_class_name="Qwen2_5_VLProcessor")
    config = qwen25_vl_7b_config(processor.tokenizer, text_layers=text_layers, vision_depth=vision_depth)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.eval()
    kwargs = {"model": model, "processor": processor, "directory": workdir, "device": torch.device(device)}
    return Subject(
        name="qwen2.5-vl-7b" + (f" ({text_layers or 28} text layers, {vision_depth or 32} vision blocks)"
                                if text_layers or vision_depth else ""),
        reference=_scorer_around(ReferenceScorer, **kwargs),
        one_pass=_scorer_around(PRMScorer, **kwargs),
        image_side=side,
    )


# ----------------------------------------------------------------------------- data


@dataclass
class Question:
    text: str
    image: Image.Image
    solutions: list[list[str]]


def _step_text(rng: random.Random, tokenizer, *, target_tokens: int, index: int) -> str:
    words = [f"Step {index + 1}:"]
    while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < target_tokens:
        words.append(rng.choice(_WORDS) if rng.random() > 0.15 else str(rng.randint(0, 99)))
    return " ".join(words)


def synthetic_questions(tokenizer, *, questions: int, solutions: int, steps: int, image_side: int, seed: int = 0):
    rng = random.Random(seed)
    made = []
    for q in range(questions):
        image = Image.new("RGB", (image_side, image_side), (rng.randrange(256), rng.randrange(256), 90))
        text = f"Question {q + 1}: in the figure, " + " ".join(rng.choice(_WORDS) for _ in range(25)) + "?"
        made.append(Question(text=text, image=image, solutions=[
            [_step_text(rng, tokenizer, target_tokens=rng.randint(*STEP_TOKENS), index=i) for i in range(steps)]
            for _ in range(solutions)
        ]))
    return made


# ----------------------------------------------------------------------------- timing


class TokenCounter:
    """Counts the real tokens (attention mask sum) of every forward pass of a model."""

    def __init__(self, model):
        self.tokens = 0
        self.passes = 0
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        self.tokens += int(mask.sum()) if mask is not None else int(kwargs["input_ids"].numel())
        self.passes += 1

    def close(self):
        self._handle.remove()


@dataclass
class Measurement:
    mode: str
    steps: int
    seconds: float
    tokens: int
    passes: int

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(mode: str, run: Callable[[list[Question]], int], questions: list[Question], *, warmup: list[Question],
            model, device, repeats: int) -> Measurement:
    run(warmup)  # allocator, kernels, lazily built rotary caches
    counter = TokenCounter(model)
    try:
        _synchronize(device)
        started = time.perf_counter()
        steps = sum(run(questions) for _ in range(repeats))
        _synchronize(device)
        seconds = time.perf_counter() - started
    finally:
        counter.close()
    return Measurement(mode=mode, steps=steps, seconds=seconds, tokens=counter.tokens, passes=counter.passes)


def scoring_measurements(subject: Subject, questions: list[Question], *, repeats: int):
    device = subject.one_pass.device
    all_scores: dict[str, list[list[float]]] = {}

    def per_step(batch: list[Question]) -> int:
        all_scores["per-step"] = [
            subject.reference.score_steps(question=q.text, steps=s, images=[q.image]) for q in batch for s in q.solutions
        ]
        return sum(len(scores) for scores in all_scores["per-step"])

    def one_pass(batch: list[Question]) -> int:
        all_scores["one-pass"] = [
            subject.one_pass.score_steps(question=q.text, steps=s, images=[q.image]) for q in batch for s in q.solutions
        ]
        return sum(len(scores) for scores in all_scores["one-pass"])

    def best_of_n(batch: list[Question]) -> int:
        all_scores["best-of-N"] = [
            scores for q in batch
            for scores in subject.one_pass.score_solutions(question=q.text, solutions=q.solutions, images=[q.image])
        ]
        return sum(len(scores) for scores in all_scores["best-of-N"])

    timing = {"model": subject.model, "device": device, "repeats": repeats}
    first = questions[0]
    one_solution = [Question(text=first.text, image=first.image, solutions=first.solutions[:1])]
    rows = [
        measure("per-step (reference)", per_step, questions, warmup=one_solution, **timing),
        measure("one-pass, 1 solution/pass", one_pass, questions, warmup=one_solution, **timing),
        measure(f"best-of-N, {len(first.solutions)}/pass", best_of_n, questions, warmup=[first], **timing),
    ]
    # The modes must agree, or the comparison is meaningless (padding and bf16 move scores slightly).
    reference = torch.tensor(all_scores["per-step"])
    differences = {mode: float((torch.tensor(scores) - reference).abs().max())
                   for mode, scores in all_scores.items() if mode != "per-step"}
    return rows, differences


def train_step_measurement(subject: Subject, questions: list[Question], *, lora: bool, batch_size: int) -> Measurement:
    """One AdamW step of prm.core.training's loss (pair cross entropy at the label tokens) on one batch of
    labelled conversations, after one warm-up step; bf16 autocast and gradient checkpointing on CUDA
    as prm.core.training decides them."""
    from prm.core.training import _batch_loss

    processor, model, device = subject.processor, subject.model, subject.one_pass.device
    label_ids = subject.one_pass.label_ids
    rng = random.Random(1)
    examples = [
        encode_conversation(processor, question=q.text, steps=s, images=[q.image], label_ids=label_ids,
                            step_labels=[rng.random() > 0.3 for _ in s])
        for q in questions for s in q.solutions
    ][:batch_size]
    if device.type == "cuda":
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if lora:
        from peft import LoraConfig, get_peft_model

        if device.type == "cuda":
            model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.05)
    pair_ids = torch.tensor([label_ids.positive, label_ids.negative], device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def step() -> int:
        with autocast:
            loss, tokens = _batch_loss(model, examples, config=_PairLoss, pad_token_id=subject.one_pass.pad_token_id,
                                       pair_ids=pair_ids, device=device)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return tokens

    step()
    _synchronize(device)
    started = time.perf_counter()
    tokens = step()
    _synchronize(device)
    return Measurement(mode=f"train step, batch {len(examples)}" + (" (LoRA)" if lora else ""),
                       steps=sum(len(e.label_positions) for e in examples), seconds=time.perf_counter() - started,
                       tokens=tokens, passes=1)


class _PairLoss:
    label_loss = "pair"


# ----------------------------------------------------------------------------- report


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def print_table(subject: Subject, rows: list[Measurement], differences: dict[str, float], *, params: int,
                peak_tflops: float, train: Measurement | None) -> None:
    on_gpu = subject.one_pass.device.type == "cuda"
    baseline = rows[0].steps_per_s
    print(f"\n== {subject.name}: {params / 1e6:,.1f}M parameters, device {subject.one_pass.device}")
    header = f"{'mode':<30} {'steps':>6} {'passes':>6} {'seconds':>8} {'steps/s':>9} {'tokens/s':>10} {'vs per-step':>11}"
    if on_gpu:
        header += f" {'% of peak':>9}"
    print(header)
    for row in rows:
        line = (f"{row.mode:<30} {row.steps:>6} {row.passes:>6} {row.seconds:>8.2f} {row.steps_per_s:>9.1f} "
                f"{row.tokens_per_s:>10,.0f} {row.steps_per_s / baseline:>10.1f}x")
        if on_gpu:
            line += f" {100 * 2 * params * row.tokens_per_s / (peak_tflops * 1e12):>8.1f}%"
        print(line)
    print("max |score difference| vs per-step: " + ", ".join(f"{m} {d:.2g}" for m, d in differences.items()))
    print(f"real tokens per pass: per-step {rows[0].tokens / rows[0].passes:.0f}, "
          f"one-pass {rows[1].tokens / rows[1].passes:.0f}; per-step encodes "
          f"{rows[0].tokens / rows[1].tokens:.1f}x the tokens of one-pass")
    if train is not None:
        line = (f"{train.mode}: {train.seconds:.2f} s, {train.tokens} tokens, {train.tokens_per_s:,.0f} tokens/s")
        if on_gpu:
            line += f", {100 * 6 * params * train.tokens_per_s / (peak_tflops * 1e12):.1f}% of {peak_tflops:g} TFLOPS"
        print(line)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("small", "tiny", "all"), default="all",
                        help="locally built random-weight Qwen2-VL(s) to measure (default: both)")
    parser.add_argument("--model-dir", type=Path, help="measure this backbone folder instead")
    parser.add_argument("--config-of", choices=("qwen2.5-vl-7b",),
                        help="build this published architecture in memory (random weights) instead")
    parser.add_argument("--text-layers", type=int, help="with --config-of: fewer text layers (e.g. to fit memory)")
    parser.add_argument("--vision-depth", type=int, help="with --config-of: fewer vision blocks")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--questions", type=int, default=1, help="questions (one image each)")
    parser.add_argument("--solutions-per-question", type=int, default=8, help="N of Best-of-N (one padded batch)")
    parser.add_argument("--steps", type=int, default=10, help="steps per solution")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes over the data per mode")
    parser.add_argument("--train-step", action="store_true", help="also time one optimizer step of prm.core.training")
    parser.add_argument("--train-batch-size", type=int, default=8)
    parser.add_argument("--lora", action="store_true", help="with --train-step: train a LoRA adapter only")
    parser.add_argument("--peak-tflops", type=float, default=H100_SXM_BF16_DENSE_TFLOPS,
                        help="the GPU's dense bf16 peak, for the share-of-peak column (default: H100 SXM)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.config_of and args.model_dir:
        parser.error("--config-of and --model-dir exclude each other")
    if (args.text_layers or args.vision_depth) and not args.config_of:
        parser.error("--text-layers/--vision-depth apply to --config-of only")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    for name in ("questions", "solutions_per_question", "steps", "repeats", "train_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def subjects(args: argparse.Namespace, workdir: Path):
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if args.config_of:
        yield subject_qwen25_vl_7b(workdir / "qwen2.5-vl-7b", device=device, dtype=dtype,
                                   text_layers=args.text_layers, vision_depth=args.vision_depth)
        return
    if args.model_dir:
        yield subject_from_directory(args.model_dir.name, args.model_dir, device=device, dtype=dtype, image_side=448)
        return
    if args.model in ("small", "all"):
        directory = build_small_qwen2_vl(workdir / "small")
        yield subject_from_directory("small Qwen2-VL (hidden 384, 6 layers)", directory, device=device, dtype=dtype,
                                     image_side=224)
    if args.model in ("tiny", "all"):
        directory = build_tiny_qwen2_vl(workdir / "tiny")
        yield subject_from_directory("tiny Qwen2-VL (hidden 64, 2 layers)", directory, device=device, dtype=dtype,
                                     image_side=56)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="prm-scoring-bench-") as workdir:
        for subject in subjects(args, Path(workdir)):
            questions = synthetic_questions(
                subject.processor.tokenizer, questions=args.questions, solutions=args.solutions_per_question,
                steps=args.steps, image_side=subject.image_side,
            )
            rows, differences = scoring_measurements(subject, questions, repeats=args.repeats)
            params = parameter_count(subject.model)
            train = (train_step_measurement(subject, questions, lora=args.lora, batch_size=args.train_batch_size)
                     if args.train_step else None)
            print_table(subject, rows, differences, params=params, peak_tflops=args.peak_tflops, train=train)
            del subject
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
