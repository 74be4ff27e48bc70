"""Model factory: builds or loads the (model, tokenizer) pair a config asks for.

Covers: the scratch GPT-2 sized from ``ModelConfig`` (its tokenizer comes from
``selfloop.model.tokenizer``), local Hugging Face causal LMs loaded with the Auto
classes (never downloading: ``local_files_only=True``), optional LoRA adapters
(peft), and the device/dtype policy (fp32 on CPU, bf16 on a GPU).

Does not cover: where generations live (``registry``) or training (``selfloop.train``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfloop.config import ModelConfig
from selfloop.errors import SelfloopError
from selfloop.model.tokenizer import CHAT_TEMPLATE, END_OF_TURN, ROLE_TOKENS, end_token_ids

# transformers 5 writes its own class name, which no other version knows; every version knows this one.
PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def resolve_device(cfg: ModelConfig) -> str:
    import torch

    if cfg.device != "auto":
        return cfg.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(cfg: ModelConfig, device: str):
    """fp32 on CPU (bf16 matmuls are far slower there), bf16 on accelerators, unless configured."""
    import torch

    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    return torch.float32 if device == "cpu" else torch.bfloat16


def build_scratch_model(cfg: ModelConfig, tokenizer):
    """A freshly initialised GPT-2 whose vocabulary and special ids match ``tokenizer``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def load_pretrained(path: Path | str, *, device: str = "cpu", dtype: Any = None, for_training: bool = False):
    """Load a causal LM and its tokenizer from a local directory with the Auto classes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a daemon's log is no place for progress bars
    path = Path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype or "auto")
    except (OSError, ValueError) as e:
        raise SelfloopError(f"cannot load model from {path}: {e}") from None
    if tokenizer.pad_token is None:
        # Batched generation and padded chat batches need a pad id; eos is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.train(for_training)
    return model, tokenizer


def adopt_chat_template(model, tokenizer) -> list[str]:
    """Give a tokenizer without a chat template selfloop's (``<|role|>...<|end|>``), adding its special tokens.

    The embeddings grow to the new vocabulary (new rows start at the mean of the old ones). Returns the
    tokens added ([] when the tokenizer had them already); does nothing to a tokenizer that has a template.
    """
    if tokenizer.chat_template:
        return []
    wanted = [END_OF_TURN, *ROLE_TOKENS.values()]
    vocab = tokenizer.get_vocab()
    added = [t for t in wanted if t not in vocab]
    if added:
        tokenizer.add_special_tokens({"additional_special_tokens": added})
    tokenizer.chat_template = CHAT_TEMPLATE
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return added


def use_lora(cfg: ModelConfig, model, *, pretrained: bool) -> bool:
    """``model.lora``: true, false, or "auto" (a pretrained model of at least ``lora_min_params`` parameters)."""
    if cfg.lora != "auto":
        return bool(cfg.lora)
    return pretrained and sum(p.numel() for p in model.parameters()) >= cfg.lora_min_params


def lora_config(cfg: ModelConfig, new_tokens: list[int] | None = None):
    """peft's ``LoraConfig`` from the ``model.lora_*`` knobs; ``new_tokens``: embedding rows that train too."""
    from peft import LoraConfig

    targets: list[str] | str | None = list(cfg.lora_target_modules) or None
    if targets == ["all-linear"]:
        targets = "all-linear"  # peft's shorthand: every linear layer but the output head
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        trainable_token_indices=list(new_tokens) if new_tokens else None,
        task_type="CAUSAL_LM",
    )


def apply_lora(model, cfg: ModelConfig, *, new_tokens: list[int] | None = None):
    """Wrap ``model`` with LoRA adapters (only the adapters train)."""
    try:
        import peft  # noqa: F401
    except ImportError:
        raise SelfloopError("model.lora needs peft: pip install 'selfloop[lora]'") from None
    from peft import get_peft_model

    try:
        return get_peft_model(model, lora_config(cfg, new_tokens))
    except ValueError as e:  # target modules that the architecture does not have
        raise SelfloopError(f"model.lora_target_modules: {e}") from None


def saved_dtype(path: Path | str):
    """The torch dtype a saved model's config.json declares (``dtype`` or the older ``torch_dtype``), or None."""
    import torch

    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = config.get("dtype") or config.get("torch_dtype")
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else None


def save_generation(model, tokenizer, out: Path | str, *, dtype: Any = None) -> Path:
    """Write ``model`` and ``tokenizer`` as a plain safetensors directory any transformers/peft user can load.

    ``dtype`` (the base model's, e.g. bf16) is what the weights are saved in. The generation config's
    ``eos_token_id`` lists every end-of-turn token: the model's own plus selfloop's, added and never
    replacing, so a plain ``model.generate`` or pipeline stops where selfloop does.
    """
    out = Path(out)
    if dtype is not None:
        model = model.to(dtype)
    gen = model.generation_config
    ends = end_token_ids(tokenizer, gen.eos_token_id)
    if ends:
        gen.eos_token_id = ends
    if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    config_file = out / "tokenizer_config.json"
    settings = json.loads(config_file.read_text(encoding="utf-8"))
    if settings.get("tokenizer_class") == "TokenizersBackend":
        settings["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
        config_file.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
