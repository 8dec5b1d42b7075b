"""Tiny vision-language backbones of real transformers architectures, built locally with random weights.

Tests (and a developer without a GPU) need a backbone that loads through AutoProcessor and
AutoModelForImageTextToText exactly like a real checkpoint, but nothing may be downloaded. Each
builder trains a small BPE tokenizer on a handful of sentences, wraps it in the family's own tokenizer
class with the special tokens its processor needs, sets the family's chat template, builds the image
processor with small images and a model config of ~50k parameters, and saves everything to a folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaTokenizer,
    LlavaConfig,
    LlavaImageProcessorPil,
    LlavaProcessor,
    Qwen2Tokenizer,
    Qwen2VLConfig,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
)

from prm.core.conversation import image_only_processor
from prm.core.prompts import FIRST_TURN_TEMPLATE, PRM_SYSTEM_PROMPT

# Text the tokenizers learn their merges from: the PRM prompts and some step-like math prose, so
# that realistic conversations tokenize into a few hundred ids rather than one id per byte.
_CORPUS = [
    PRM_SYSTEM_PROMPT,
    FIRST_TURN_TEMPLATE,
    "The area of the triangle is 1/2 * base * height = 1/2 * 6 * 4 = 12.",
    "Step 1: Look at the image. The figure shows a circle with radius 3.",
    "So the answer is 12. Answer: B. The final answer is \\boxed{12}.",
    "Therefore x + y = 7 and x - y = 1, so x = 4 and y = 3.",
    "We compute 2 + 3 = 5, then 5 - 1 = 4, and the result is correct.",
    "USER: ASSISTANT: + - + - system user assistant",
    "Which option is correct? A. 3 B. 4 C. 5 D. 6",
] * 4

# The real chat templates of the families (Qwen2-VL-Instruct and llava-hf 1.5), unchanged.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

QWEN2_VL_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
LLAVA_SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]

TINY_VOCAB_SIZE = 512
# Far above the usual 0.02, so random weights give step scores that differ visibly between steps,
# images and positions: tests comparing scores then detect an off-by-one position.
INIT_STD = 0.2


def _trained_vocab_and_merges(tokenizer: Tokenizer, special_tokens: list[str], alphabet: list[str]):
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    model_state = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_state["merges"]]
    return model_state["vocab"], merges


def _qwen2_tokenizer() -> Qwen2Tokenizer:
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    trainee = Tokenizer(models.BPE())
    # Same pre-tokenization as Qwen2, so the learnt merges are ones Qwen2Tokenizer can apply.
    trainee.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainee.decoder = decoders.ByteLevel()
    vocab, merges = _trained_vocab_and_merges(
        trainee, QWEN2_VL_SPECIAL_TOKENS, pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        extra_special_tokens=QWEN2_VL_SPECIAL_TOKENS[1:],
    )
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tokenizer


def _llama_tokenizer() -> LlamaTokenizer:
    trainee = Tokenizer(models.BPE())
    trainee.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    # Byte fallback tokens so that characters outside the corpus still encode, as in Llama.
    byte_tokens = [f"<0x{value:02X}>" for value in range(256)]
    alphabet = sorted({ch for text in _CORPUS for ch in text.replace(" ", "▁")} | {"▁"})
    vocab, merges = _trained_vocab_and_merges(trainee, LLAVA_SPECIAL_TOKENS + byte_tokens, alphabet)
    tokenizer = LlamaTokenizer(
        vocab=vocab,
        merges=merges,
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.chat_template = LLAVA_CHAT_TEMPLATE
    return tokenizer


def _save_model(config, directory: Path, *, seed: int) -> None:
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.save_pretrained(directory)


def qwen2_vl_processor(*, min_pixels: int = 56 * 56, max_pixels: int = 56 * 56) -> Qwen2VLProcessor:
    """Qwen2-VL's processor on the local tokenizer. Each 28x28 pixel patch after merging is one image
    token: the tiny default makes a 56x56 image 4 tokens; Qwen2-VL's own sizes are 3136 and 12845056."""
    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    # Image-only: transformers 5 builds Qwen2-VL's video processor only with torchvision installed.
    return image_only_processor(
        Qwen2VLProcessor,
        image_processor=image_processor,
        tokenizer=_qwen2_tokenizer(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def build_tiny_qwen2_vl(directory: Path, *, seed: int = 0) -> Path:
    """A Qwen2-VL backbone (2 text layers, hidden 64; 1 vision block) in `directory`; returns it."""
    directory = Path(directory)
    processor = qwen2_vl_processor()
    processor.save_pretrained(directory)
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            # head_dim 16: the temporal/height/width rotary sections must add up to head_dim / 2.
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
            "initializer_range": INIT_STD,
        },
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "initializer_range": INIT_STD,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    _save_model(config, directory, seed=seed)
    return directory


def build_tiny_llava(directory: Path, *, seed: int = 0) -> Path:
    """A LLaVA-1.5 backbone (CLIP vision tower, Llama text, hidden 64, 2 layers) in `directory`."""
    directory = Path(directory)
    tokenizer = _llama_tokenizer()
    image_size, patch_size = 32, 8
    image_processor = LlavaImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_pad=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    processor.save_pretrained(directory)
    ids = tokenizer.convert_tokens_to_ids
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
            projection_dim=32,
            initializer_range=INIT_STD,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            bos_token_id=ids("<s>"),
            eos_token_id=ids("</s>"),
            pad_token_id=ids("<pad>"),
            initializer_range=INIT_STD,
        ),
        image_token_id=ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    _save_model(config, directory, seed=seed)
    return directory


TINY_BACKBONE_BUILDERS: dict[str, Callable[..., Path]] = {
    "qwen2_vl": build_tiny_qwen2_vl,
    "llava": build_tiny_llava,
}


def build_tiny_backbone(family: str, directory: Path, *, seed: int = 0) -> Path:
    """Build the tiny backbone of `family` (a key of TINY_BACKBONE_BUILDERS) in `directory`."""
    try:
        builder = TINY_BACKBONE_BUILDERS[family]
    except KeyError:
        raise ValueError(
            f"unknown tiny backbone family {family!r}; known: {sorted(TINY_BACKBONE_BUILDERS)}"
        ) from None
    return builder(directory, seed=seed)
