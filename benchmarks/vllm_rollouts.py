"""MC rollouts through vLLM's offline engine on a full-size policy architecture with random weights:
completions/s and tokens/s with and without prefix caching, on VisualPRM-shaped requests (GPU).

    .venv/bin/python benchmarks/vllm_rollouts.py --prepare-only          # any machine: build and check
    python benchmarks/vllm_rollouts.py [--questions 32] [--steps 6] [--k 16] [--max-new-tokens 256]

The policy is Qwen2-VL-7B-Instruct's published architecture (config.json written here, no weights:
vLLM's `load_format="dummy"` fills them at random on the GPU) on the local tokenizer and Qwen2-VL's
own image processor sizes, so nothing is downloaded. Each question has one 896x672 image (768 image
tokens) and a solution of `--steps` steps; as in VisualPRM400K, every prefix of the solution (after
step 1, 2, ...) is continued k times. Requests are built, rendered and ordered by
workers.generation.vllm_backend (the MC job's own path: prefixes of one solution submitted one after
another, each with n=k), once with the prefix cache and once without, each in its own process.
Random weights make random tokens: every completion runs to `--max-new-tokens` (ignore_eos) and is
not detokenized (its ids are mostly outside the local tokenizer), so the figures are the engine's
prefill and decode, which is what the GPU-hours of benchmarks/README.md need.

Needs `pip install -e .[gpu]` (vllm) and one GPU; not yet run: no GPU was lent when it was written.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

IMAGE_SIZE = (896, 672)  # 32 x 24 merged patches of 28 pixels: 768 image tokens
QWEN2_VL_MIN_PIXELS, QWEN2_VL_MAX_PIXELS = 3136, 12845056
WORDS = (
    "the angle triangle circle radius area equals therefore so we compute length side since given "
    "point line parallel perpendicular sum of and is by theorem figure shows value option answer"
).split()


def build_policy_folder(directory: Path) -> Path:
    """Qwen2-VL-7B-Instruct's config (vocabulary 152,064) with the local tokenizer and processor; no weights."""
    from transformers import Qwen2VLConfig

    from prm.core.tiny_models import qwen2_vl_processor

    directory.mkdir(parents=True, exist_ok=True)
    processor = qwen2_vl_processor(min_pixels=QWEN2_VL_MIN_PIXELS, max_pixels=QWEN2_VL_MAX_PIXELS)
    processor.save_pretrained(directory)
    ids = processor.tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
            "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_act": "silu",
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
            "bos_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"), "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 32, "embed_dim": 1280, "hidden_size": 3584, "mlp_ratio": 4, "num_heads": 16, "in_channels": 3,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "hidden_act": "quick_gelu",
        },
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    config.save_pretrained(directory)
    return directory


def mc_requests(*, questions: int, steps: int, k: int, max_new_tokens: int, seed: int = 0):
    """One GenerationRequest per (question, prefix), n=k, as the MC job sends them."""
    from PIL import Image

    from annotation.steps import join_steps
    from workers.generation.base import GenerationRequest, SamplingParams
    from workers.generation.prompting import solution_messages

    rng = random.Random(seed)
    requests = []
    for number in range(questions):
        image = Image.new("RGB", IMAGE_SIZE, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        question = f"Question {number}: " + " ".join(rng.choice(WORDS) for _ in range(40)) + "?"
        solution = [f"Step {i + 1}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 40))) + "."
                    for i in range(steps)]
        messages = solution_messages(question=question, num_images=1)
        for cut in range(1, steps):
            requests.append(GenerationRequest(
                messages=messages, images=[image], continuation=join_steps(solution[:cut]), n=k,
                sampling=SamplingParams(temperature=1.0, top_p=1.0, top_k=50, max_new_tokens=max_new_tokens,
                                        seed=rng.randrange(2**31)),
            ))
    return requests


def prepared(folder: Path, args) -> tuple[list, list[dict], list[dict]]:
    from prm.core.conversation import load_processor
    from workers.generation.vllm_backend import render_prompt, vllm_inputs

    processor = load_processor(folder)
    requests = mc_requests(questions=args.questions, steps=args.steps, k=args.k, max_new_tokens=args.max_new_tokens)
    order, prompts, sampling = vllm_inputs(requests, lambda request: render_prompt(processor, request))
    return requests, prompts, sampling


def check_prepared(folder: Path, args) -> None:
    """Without vllm: the folder loads as Qwen2-VL, and the requests render to prompts of the intended size."""
    from transformers import AutoConfig

    from prm.core.conversation import load_processor

    config = AutoConfig.from_pretrained(folder)
    processor = load_processor(folder)
    requests, prompts, sampling = prepared(folder, args)
    first = prompts[0]
    encoded = processor(text=[first["prompt"]], images=first["multi_modal_data"]["image"], return_tensors="pt")
    image_tokens = int((encoded["input_ids"] == config.image_token_id).sum())
    assert image_tokens == (IMAGE_SIZE[0] // 28) * (IMAGE_SIZE[1] // 28), image_tokens
    assert all(params["n"] == args.k and params["max_tokens"] == args.max_new_tokens for params in sampling)
    print(f"{folder}: {config.model_type}, text {config.text_config.num_hidden_layers} layers x "
          f"{config.text_config.hidden_size}, vocabulary {config.text_config.vocab_size:,}")
    print(f"{len(requests)} requests ({args.questions} questions x {args.steps - 1} prefixes), n={args.k}: "
          f"{len(requests) * args.k:,} completions of {args.max_new_tokens} tokens; first prompt "
          f"{encoded['input_ids'].shape[1]:,} tokens ({image_tokens} of them the image)")


def run_mode(folder: Path, args, *, prefix_caching: bool) -> dict:
    """One engine, one mode (in its own process: a second engine in one process would not get the GPU back)."""
    from vllm import LLM, SamplingParams

    _, prompts, sampling = prepared(folder, args)
    llm = LLM(model=str(folder), load_format="dummy", dtype="bfloat16", enable_prefix_caching=prefix_caching,
              gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len,
              limit_mm_per_prompt={"image": 1}, tensor_parallel_size=args.tp, seed=0)
    params = [SamplingParams(**entry, ignore_eos=True, detokenize=False) for entry in sampling]
    llm.generate(prompts[:2], params[:2], use_tqdm=False)  # warm-up: compile, CUDA graphs
    started = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=True)
    seconds = time.perf_counter() - started
    completions = sum(len(output.outputs) for output in outputs)
    generated = sum(len(c.token_ids) for output in outputs for c in output.outputs)
    prompt_tokens = sum(len(output.prompt_token_ids) for output in outputs)
    return {"prefix_caching": prefix_caching, "seconds": seconds, "completions": completions,
            "generated_tokens": generated, "prompt_tokens": prompt_tokens, "requests": len(outputs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare-only", action="store_true", help="build the folder and requests, check them, stop")
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="steps per solution (VisualPRM400K: 5.6 on average)")
    parser.add_argument("--k", type=int, default=16, help="continuations per prefix (VisualPRM: 16)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel GPUs")
    parser.add_argument("--folder", type=Path, help="(internal) a folder build_policy_folder made")
    parser.add_argument("--mode", choices=("cached", "uncached"), help="(internal) run one mode, print its JSON")
    args = parser.parse_args()

    if args.mode:
        print(json.dumps(run_mode(args.folder, args, prefix_caching=args.mode == "cached")))
        return
    with tempfile.TemporaryDirectory(prefix="stepmark-vllm-policy-") as temp:
        folder = build_policy_folder(Path(temp) / "qwen2-vl-7b-dummy")
        check_prepared(folder, args)
        if args.prepare_only:
            return
        forwarded = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in
                     ("questions", "steps", "k", "max_new_tokens", "max_model_len", "gpu_memory_utilization", "tp")]
        rows = []
        for mode in ("cached", "uncached"):
            done = subprocess.run([sys.executable, __file__, "--folder", str(folder), "--mode", mode, *forwarded],
                                  check=True, capture_output=True, text=True, cwd=REPO_ROOT)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'prefix cache':>12} {'s':>7} {'completions/s':>13} {'gen tokens/s':>12} {'prompt tokens':>13}")
    for row in rows:
        print(f"{'on' if row['prefix_caching'] else 'off':>12} {row['seconds']:>7.1f} "
              f"{row['completions'] / row['seconds']:>13,.1f} {row['generated_tokens'] / row['seconds']:>12,.0f} "
              f"{row['prompt_tokens']:>13,}")
    print(f"prefix cache speed-up: {rows[1]['seconds'] / rows[0]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
