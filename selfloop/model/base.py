"""The base model a project starts from: ``model.base`` resolved to a local Hugging Face model directory.

Covers: the accepted forms of ``model.base`` ("scratch"; a local directory saved with ``save_pretrained``; a model id
whose files are already in the local Hugging Face cache, never downloaded; a ``.gguf`` file, converted once into a
plain safetensors directory under the state dir), and the check ``validate-config`` runs (the base exists and its
config loads).

Does not cover: loading the resolved directory (``selfloop.model.factory.load_pretrained``) or training from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Literal

from selfloop.errors import SelfloopError

BASES_DIR = "base"  # under the state dir: converted GGUF bases, one folder per file content
SOURCE = "selfloop_source.json"  # in a converted folder: what it was made from
# An id on the Hugging Face hub: "name" or "org/name" (letters, digits, - _ .).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")

BaseKind = Literal["scratch", "gguf", "dir", "hub"]


def base_kind(base: str, root: Path) -> BaseKind:
    """Which form ``model.base`` takes (pure apart from one ``is_dir`` check: a local path wins over a hub id)."""
    if base == "scratch":
        return "scratch"
    if base.lower().endswith(".gguf"):
        return "gguf"
    path = _local(base, root)
    if path.is_dir() or base.startswith((".", "/", "~")) or base.count("/") > 1 or not _HUB_ID.match(base):
        return "dir"
    return "hub"


def _local(base: str, root: Path) -> Path:
    path = Path(base).expanduser()
    return path if path.is_absolute() else root / path


def local_model_dir(base: str, root: Path, *, key: str = "model.base") -> Path:
    """A local Hugging Face model directory named by ``base`` (relative to the project root)."""
    path = _local(base, root)
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "has no config.json"
        scratch = '"scratch", ' if key == "model.base" else ""  # a judge's reference is never an untrained model
        raise SelfloopError(
            f'{key} = "{base}": {path} {what}; use {scratch}a directory saved with save_pretrained, '
            "a model id already in the local Hugging Face cache, or a .gguf file"
        )
    return path


def cached_hub_dir(
    model_id: str, cache_dir: Path | str | None = None, *, root: Path | None = None, key: str = "model.base"
) -> Path:
    """The local snapshot of hub model ``model_id`` (never a download: ``local_files_only``).

    ``root``: the project root, to say in the error that no local directory of that name exists either.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(model_id, local_files_only=True, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError) as e:
        local = f"no directory {root / model_id} and " if root is not None else ""
        raise SelfloopError(
            f'{key} = "{model_id}": {local}not in the local Hugging Face cache, and selfloop never downloads '
            f"({type(e).__name__}); fetch it first (huggingface-cli download {model_id}) or give a local "
            "directory or .gguf file"
        ) from None
    if not (path / "config.json").is_file():
        raise SelfloopError(f'{key} = "{model_id}": the cached snapshot {path} has no config.json')
    return path


def gguf_file(base: str, root: Path, *, key: str = "model.base") -> Path:
    path = _local(base, root)
    if not path.is_file():
        raise SelfloopError(f'{key} = "{base}": GGUF file {path} does not exist')
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def converted_dir(gguf: Path, state: Path) -> Path:
    """Where the conversion of ``gguf`` lives: named by its stem and content, so a changed file converts again."""
    return state / BASES_DIR / f"{gguf.stem}-{file_sha256(gguf)[:16]}"


def resolve_base(base: str, root: Path, state: Path, *, log=print, key: str = "model.base") -> Path | None:
    """The local model directory training starts from for ``model.base``; None for "scratch".

    A ``.gguf`` file is converted on first use into ``<state>/base/<stem>-<sha>/`` (atomic:
    temp folder, rename) and reused afterwards.
    """
    kind = base_kind(base, root)
    if kind == "scratch":
        return None
    if kind == "dir":
        return local_model_dir(base, root, key=key)
    if kind == "hub":
        return cached_hub_dir(base, root=root, key=key)
    source = gguf_file(base, root, key=key)
    out = converted_dir(source, state)
    if (out / "config.json").is_file():
        return out
    log(f"model: converting {source.name} (GGUF) into safetensors at {out} (once)")
    started = time.perf_counter()
    convert_gguf(source, out)
    log(f"model: converted {source.name} in {time.perf_counter() - started:.1f} s")
    return out


def convert_gguf(source: Path, out: Path) -> Path:
    """Dequantize GGUF ``source`` into a plain safetensors model + tokenizer directory ``out``.

    transformers loads a GGUF (dequantized to torch tensors) but refuses to ``save_pretrained`` such a
    model ("quantized with gguf"); a model built from the same config with the same state dict is an
    ordinary one and gives the same logits. The end-of-turn tokens go into its generation config.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from selfloop.model.factory import save_generation

    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    try:
        with _quiet_gguf_progress():
            tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise SelfloopError(f"cannot read GGUF model {source}: {type(e).__name__}: {e}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise SelfloopError(f"converting {source}: weights do not match (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_generation(model, tokenizer, tmp)
        (tmp / SOURCE).write_text(
            json.dumps(
                {
                    "gguf": str(source),
                    "sha256": file_sha256(source),
                    "converted_at": time.time(),
                    "seconds": round(time.perf_counter() - started, 1),
                    "parameters": sum(p.numel() for p in model.parameters()),
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@contextmanager
def _quiet_gguf_progress():
    """transformers' GGUF reader draws a tqdm bar that ignores ``disable_progress_bar``; a daemon's log wants none."""
    from transformers import modeling_gguf_pytorch_utils as reader

    bar = getattr(reader, "tqdm", None)
    if bar is None:  # another transformers version: nothing to quiet
        yield
        return
    reader.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        reader.tqdm = bar


def describe_base(base: str, root: Path) -> str:
    """Check that ``model.base`` exists and its config loads (no weights, no conversion); a one-line summary.

    Raises ``SelfloopError`` with the reason otherwise. This is what ``validate-config`` runs.
    """
    kind = base_kind(base, root)
    if kind == "scratch":
        return "scratch GPT-2"
    from transformers import AutoConfig

    if kind == "gguf":
        path = gguf_file(base, root)
        try:
            config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
        except Exception as e:  # a truncated or foreign file fails in many ways inside the reader
            raise SelfloopError(f'model.base = "{base}": not a readable GGUF model ({type(e).__name__}: {e})') from None
    else:
        path = local_model_dir(base, root) if kind == "dir" else cached_hub_dir(base, root=root)
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise SelfloopError(f'model.base = "{base}": its config does not load ({e})') from None
    arch = ",".join(getattr(config, "architectures", None) or [config.model_type])
    sizes = [
        f"{label} {getattr(config, key)}"
        for key, label in (("num_hidden_layers", "layers"), ("hidden_size", "hidden"), ("vocab_size", "vocab"))
        if getattr(config, key, None) is not None
    ]
    return f"{kind} {path} ({', '.join([arch, *sizes])})"
