"""Generation back ends: transformers on a tiny local model, the OpenAI-compatible client against a
real HTTP server, and the vLLM plumbing that runs without vllm."""

from __future__ import annotations

import io
import json
import socket

import pytest
import torch
from PIL import Image

from prm.core.tiny_models import build_tiny_qwen2_vl
from workers.errors import PermanentJobError, TransientJobError
from workers.generation.base import Completion, GenerationRequest, SamplingParams, backend_from_params
from workers.generation.openai_backend import OpenAIBackend, chat_payload
from workers.generation.serve import OpenAICompatibleServer, request_from_payload
from workers.generation.transformers_backend import TransformersBackend, run_halving_on_oom
from workers.generation.vllm_backend import prefix_cache_order, restore_order, vllm_inputs

SAMPLING = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=4, seed=7)


def png(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 50), color).save(buffer, format="PNG")
    return buffer.getvalue()


def request(continuation: str = "", *, n: int = 2, images=(), sampling=SAMPLING) -> GenerationRequest:
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": "What is 2 + 3?"}]
    return GenerationRequest(
        messages=[{"role": "user", "content": content}],
        images=list(images),
        continuation=continuation,
        n=n,
        sampling=sampling,
    )


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny") / "tiny-qwen2-vl")


@pytest.fixture(scope="module")
def transformers_backend(tiny_model_dir):
    return TransformersBackend(model_path=str(tiny_model_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def served_tiny_model(transformers_backend):
    server = OpenAICompatibleServer(transformers_backend, model="tiny-policy").start()
    yield server
    server.stop()


def test_transformers_backend_batches_images_and_continues_the_partial_answer(transformers_backend):
    prefix = "Step one: 2 + 3.\n\nStep two: it is 5."
    prompt = transformers_backend.prompt_text(request(prefix, images=[png("red")]))
    # The partial assistant turn is left open: generation continues right after its last word.
    assert prompt.endswith("<|im_start|>assistant\n" + prefix)
    assert "<|image_pad|>" in prompt
    assert transformers_backend.prompt_text(request()).endswith("<|im_start|>assistant\n")

    requests = [
        request(prefix, n=3, images=[png("red")]),
        request(n=2),
        request("Step one.", n=3, images=[png("blue")]),
    ]
    outputs = transformers_backend.generate(requests)
    assert [len(texts) for texts in outputs] == [3, 2, 3]
    assert all(isinstance(c.text, str) and prefix not in c.text for texts in outputs for c in texts)
    # Same seed, same request: the same completions (the prefix is not regenerated, only continued).
    again = transformers_backend.generate([requests[1]])
    assert again[0] == outputs[1]


def test_bad_model_paths_fail_at_construction(tmp_path):
    with pytest.raises(PermanentJobError, match="not a model folder"):
        TransformersBackend(model_path=str(tmp_path / "missing"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(PermanentJobError, match="cannot load the model"):
        TransformersBackend(model_path=str(broken))
    with pytest.raises(PermanentJobError, match="unknown generation back end"):
        backend_from_params({"backend": "tgi"})
    with pytest.raises(PermanentJobError, match="does not take"):
        backend_from_params({"backend": "transformers", "model_path": str(broken), "beam_width": 3})


def test_out_of_memory_halves_the_batch_until_it_fits():
    capacity = 3
    seen = []

    def run_batch(batch):
        seen.append(len(batch))
        if len(batch) > capacity:  # a device that holds three sequences at a time
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return [item * 10 for item in batch]

    results, size = run_halving_on_oom(
        list(range(7)), batch_size=8, run_batch=run_batch, oom=(torch.cuda.OutOfMemoryError,)
    )
    assert results == [item * 10 for item in range(7)]
    assert size == 2 and seen == [7, 4, 2, 2, 2, 1]
    capacity = 0
    with pytest.raises(TransientJobError, match="even for one prompt"):
        run_halving_on_oom([1], batch_size=2, run_batch=run_batch, oom=(torch.cuda.OutOfMemoryError,))


def test_chat_payload_round_trips_through_the_server_parser():
    original = request("Step one.", n=5, images=[png("red"), png("green")])
    payload = chat_payload(original, model="m")
    assert payload["continue_final_message"] is True and payload["add_generation_prompt"] is False
    assert payload["messages"][-1] == {"role": "assistant", "content": "Step one."}
    assert payload["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    parsed = request_from_payload(json.loads(json.dumps(payload)))
    assert parsed == original


def test_openai_backend_against_a_real_server_matches_local_generation(
    served_tiny_model, transformers_backend, settings
):
    backend = OpenAIBackend(base_url=served_tiny_model.base_url, model="tiny-policy")
    requests = [
        request("Step one: 2 + 3.", n=3, images=[png("red")]),
        request(n=2, sampling=SamplingParams(max_new_tokens=3, seed=11)),
    ]
    remote = backend.generate(requests)
    assert [len(texts) for texts in remote] == [3, 2]
    # Images, continuation, n and seed all reached the model: the server's answer is the local one.
    assert remote == transformers_backend.generate(requests)

    # Jobs name one of the operator's servers; the URL comes from settings.
    settings.STEPMARK_GENERATION_SERVERS = {"tiny": {"base_url": served_tiny_model.base_url, "model": "tiny-policy"}}
    backend_from_factory = backend_from_params({"backend": "openai", "server": "tiny", "model": "tiny-policy", "name": "tiny"})
    assert isinstance(backend_from_factory, OpenAIBackend)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_openai_backend_errors_are_permanent_at_start_and_transient_later(transformers_backend):
    with pytest.raises(PermanentJobError, match="unreachable"):
        OpenAIBackend(base_url=f"http://127.0.0.1:{_free_port()}/v1", model="tiny-policy", timeout=5)
    server = OpenAICompatibleServer(transformers_backend, model="tiny-policy").start()
    try:
        with pytest.raises(PermanentJobError, match="does not serve model 'other'"):
            OpenAIBackend(base_url=server.base_url, model="other")
        backend = OpenAIBackend(base_url=server.base_url, model="tiny-policy", timeout=5)
        backend.model = "renamed-since"  # the server answers 404 for a model it does not have
        with pytest.raises(PermanentJobError, match="HTTP 404"):
            backend.generate([request(n=1)])
        backend.model = "tiny-policy"
    finally:
        server.stop()
    with pytest.raises(TransientJobError):  # the server went away mid-job: worth a retry
        backend.generate([request(n=1)])


def test_vllm_plumbing_orders_prefixes_for_the_cache_and_restores_the_order(tiny_model_dir):
    steps = ["a", "b", "c"]
    red, blue = png("red"), png("blue")
    requests = [
        request("\n\n".join(steps[:3]), images=[red]),
        request("other", images=[blue]),
        request("\n\n".join(steps[:1]), images=[red]),
        request("\n\n".join(steps[:2]), images=[red]),
    ]
    order = prefix_cache_order(requests)
    assert order == [2, 3, 0, 1]  # one solution's prefixes in ascending order, then the other prompt
    order, prompts, sampling = vllm_inputs(requests, lambda r: f"<prompt>{r.continuation}")
    assert [p["prompt"] for p in prompts] == [
        "<prompt>a",
        "<prompt>a\n\nb",
        "<prompt>a\n\nb\n\nc",
        "<prompt>other",
    ]
    assert prompts[0]["multi_modal_data"]["image"][0].size == (60, 50)
    # Every parameter explicit, so the model's generation_config.json fills nothing in.
    assert sampling[0] == {
        "n": 2, "temperature": 1.0, "top_p": 0.9, "top_k": 50, "max_tokens": 4, "repetition_penalty": 1.0, "seed": 7
    }
    no_top_k = vllm_inputs([request(sampling=SamplingParams(top_k=0))], lambda r: "")[2][0]
    assert no_top_k["top_k"] == -1  # vLLM's "off"
    outputs = [[p["prompt"]] for p in prompts]
    assert restore_order(order, outputs) == [
        ["<prompt>a\n\nb\n\nc"],
        ["<prompt>other"],
        ["<prompt>a"],
        ["<prompt>a\n\nb"],
    ]
    # vllm is not installed here: the back end says so at construction instead of failing later.
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(PermanentJobError, match="needs vllm"):
            backend_from_params({"backend": "vllm", "model_path": str(tiny_model_dir)})


# Qwen2-VL-7B-Instruct's generation_config.json, sampling fields verbatim: near-greedy.
QWEN2_VL_INSTRUCT_SAMPLING = {"do_sample": True, "repetition_penalty": 1.05, "temperature": 0.01, "top_p": 0.001, "top_k": 1}


@pytest.fixture(scope="module")
def instruct_like_model_dir(tmp_path_factory):
    directory = build_tiny_qwen2_vl(tmp_path_factory.mktemp("instruct") / "tiny-qwen2-vl-instruct")
    path = directory / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **QWEN2_VL_INSTRUCT_SAMPLING}))
    return directory


def test_sampling_uses_the_jobs_parameters_not_the_models_generation_config(instruct_like_model_dir):
    backend = TransformersBackend(model_path=str(instruct_like_model_dir), device="cpu", batch_size=8)
    assert backend.model.generation_config.top_k == 1  # the near-greedy defaults were loaded ...
    reference = SamplingParams(temperature=1.0, top_p=1.0, top_k=50, max_new_tokens=6, seed=3)
    (samples,) = backend.generate([request("Step one.", n=8, sampling=reference)])
    texts = [completion.text for completion in samples]
    # ... yet the 8 rollouts are real samples (with top_k 1 from the model they are all identical).
    assert len(set(texts)) >= 6, texts
    # Cut at 6 new tokens without an end of sequence: truncated, to be left unjudged.
    assert all(completion.truncated for completion in samples)
    # Greedy decoding (temperature 0) is still one answer 8 times.
    (greedy,) = backend.generate([request("Step one.", n=8, sampling=SamplingParams(temperature=0, max_new_tokens=6))])
    assert len({completion.text for completion in greedy}) == 1


def test_a_completion_that_ends_is_not_truncated(transformers_backend):
    # Every token counts as an end of sequence for a moment: each completion ends at its first token.
    config = transformers_backend.model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = list(range(transformers_backend.model.config.get_text_config().vocab_size))
    try:
        (completions,) = transformers_backend.generate(
            [request("Step one.", n=3, sampling=SamplingParams(max_new_tokens=20, seed=1))]
        )
    finally:
        config.eos_token_id = saved
    assert [completion.truncated for completion in completions] == [False, False, False]


def test_openai_payload_sends_top_k_and_reads_length_as_truncated(transformers_backend):
    payload = chat_payload(request(sampling=SamplingParams(top_k=50)), model="m")
    assert (payload["top_k"], payload["temperature"], payload["top_p"], payload["max_tokens"]) == (50, 1.0, 1.0, 4096)
    assert chat_payload(request(sampling=SamplingParams(top_k=0)), model="m")["top_k"] == -1
    server = OpenAICompatibleServer(transformers_backend, model="tiny-policy").start()
    try:
        backend = OpenAIBackend(base_url=server.base_url, model="tiny-policy", timeout=30)
        (completions,) = backend.generate([request(n=2, sampling=SamplingParams(max_new_tokens=3, seed=5))])
    finally:
        server.stop()
    # The local server reports a cut completion as finish_reason "length"; the client reads it back.
    assert all(isinstance(c, Completion) and c.truncated for c in completions)


def test_the_vllm_rollout_benchmark_prepares_a_full_size_policy_and_visualprm_shaped_requests(tmp_path, capsys):
    """benchmarks/vllm_rollouts.py runs on a GPU only; what it builds and sends is checked here."""
    from argparse import Namespace

    from benchmarks import vllm_rollouts

    folder = vllm_rollouts.build_policy_folder(tmp_path / "policy")
    assert not list(folder.glob("*.safetensors")), "the weights are vLLM's dummy ones, never written"
    args = Namespace(questions=2, steps=4, k=16, max_new_tokens=32)
    vllm_rollouts.check_prepared(folder, args)  # loads as Qwen2-VL; 768 image tokens a prompt
    assert "6 requests (2 questions x 3 prefixes), n=16: 96 completions" in capsys.readouterr().out
    requests, prompts, _ = vllm_rollouts.prepared(folder, args)
    # The MC job's rendering: the partial answer is continued, not closed, and one solution's
    # prefixes go one after another (each extends the one before), for the prefix cache.
    assert [prompt["prompt"][-len(request.continuation):] for prompt, request in zip(prompts, requests, strict=True)] == [
        request.continuation for request in requests
    ]
    first_question = [p["prompt"] for p in prompts[:3]]
    assert all(first_question[i + 1].startswith(first_question[i]) for i in range(2))
    assert first_question[1] != first_question[0]
