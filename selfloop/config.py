"""Typed configuration: the pydantic models of ``config.toml``.

The only place defaults live (a test keeps the shipped ``config.toml`` in step). Each component receives only its
own section, never the whole tree; unknown keys are errors with a "did you mean" hint. Environment overrides
``SELFLOOP_<SECTION>__<KEY>=value`` take precedence over the file.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from selfloop.errors import ConfigError

ENV_PREFIX = "SELFLOOP_"
# The readers of selfloop.corpus.formats.parse; a file whose suffix has none is read as text.
Reader = Literal["text", "md", "py", "html", "jsonl", "json"]
DEFAULT_READERS: dict[str, Reader] = {
    ".md": "md",
    ".markdown": "md",
    ".py": "py",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".jsonl": "jsonl",
    ".json": "json",
}
# The keys selfloop reads JSON records by (selfloop.corpus.formats.json_record): [ingest.json_fields] maps onto them.
JsonField = Literal[
    "text", "messages", "conversations", "prompt", "completion", "instruction", "input", "output", "system"
]
# The doc_quality judge's rules (selfloop.judge.doc_rules): Gopher, C4 and FineWeb heuristics, each one check.
DocRule = Literal[
    "gopher_stop_words",
    "gopher_alpha_words",
    "gopher_word_length",
    "gopher_symbols",
    "gopher_lines",
    "gopher_repetition",
    "gopher_top_ngrams",
    "c4_sentences",
    "fineweb_line_punct",
    "fineweb_newlines",
    "fineweb_short_lines",
]
DOC_RULES: tuple[str, ...] = get_args(DocRule)
# The generated task families of selfloop.tasks.families (a test keeps the two equal).
TASK_FAMILIES = ("addition", "reverse")


class Section(BaseModel):
    # No setting means anything as NaN or infinity; refused here, they would fail much later (int(inf)).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class PathsConfig(Section):
    """Where things live, relative to the directory holding config.toml."""

    orig: str = Field("corpus/orig", description="user-owned input; never written by selfloop")
    rework: str = Field("corpus/rework", description="accepted model-written data (append-only)")
    state: str = Field(".selfloop", description="state dir: SQLite store, models, logs, lock")


class WatchConfig(Section):
    """How changes under orig/ and rework/ are noticed."""

    enabled: bool = Field(True, description="watch orig/ and rework/ for changes while running")
    polling: bool = Field(False, description="use a PollingObserver (network filesystems)")
    poll_interval_s: float = Field(2.0, gt=0, description="polling period when polling = true")
    settle_s: float = Field(2.0, ge=0, description="a file must be unchanged this long before ingest")
    debounce_s: float = Field(1.0, ge=0, description="events for one path within this window coalesce")
    ignore: list[str] = Field(
        default_factory=lambda: [".*", "*~", "*.tmp", "*.part", "*.swp", "*.swx", "#*#", "~$*"],
        description="glob patterns of file names never ingested (hidden, temp, editor swap files)",
    )


class IngestConfig(Section):
    """Preprocessing: formats, normalization, filters (each drop has a reason), dedup, held-out split."""

    # Deprecated: every text file is read now. Still accepted (configs written before load), never written out.
    extensions: list[str] | None = Field(None, exclude=True, description="deprecated and ignored")
    readers: dict[str, Reader] = Field(
        default_factory=lambda: dict(DEFAULT_READERS),
        description=(
            "reader by file suffix (text, md, py, html, jsonl, json), added to these defaults; "
            "every other file that decodes as text is read as text"
        ),
    )
    json_fields: dict[str, JsonField] = Field(
        default_factory=dict,
        description='JSON record keys renamed before reading, e.g. question = "prompt", answer = "completion"',
    )
    max_file_mb: float = Field(64.0, gt=0, description="larger files are quarantined unread")
    chunk_chars: int = Field(
        2000, ge=64, description="long text files split at paragraphs into documents of about this size"
    )
    min_chars: int = Field(32, ge=0, description="documents shorter than this are dropped")
    max_chars: int = Field(100_000, gt=0, description="documents longer than this are dropped")
    max_symbol_ratio: float = Field(
        0.35, ge=0, le=1, description="drop text whose share of non-alphanumeric, non-space characters exceeds this"
    )
    max_dup_line_fraction: float = Field(
        0.4, ge=0, le=1, description="drop text whose repeated lines make up more than this share"
    )
    max_top_ngram_fraction: float = Field(
        0.3,
        ge=0,
        le=1,
        description="drop text whose most frequent word 3-gram covers more than this share of characters",
    )
    repetition_min_words: int = Field(
        30,
        ge=1,
        description="the 3-gram repetition check skips texts with fewer words",
    )
    max_control_ratio: float = Field(
        0.01, ge=0, le=1, description="drop text with more control characters than this share (binary)"
    )
    near_dup_threshold: float = Field(
        0.85, gt=0, le=1, description="MinHash Jaccard above which a document is a near duplicate"
    )
    minhash_perm: int = Field(
        128,
        ge=16,
        le=1024,
        description="MinHash permutations (a number with many divisors bands best)",
    )
    shingle_words: int = Field(5, ge=1, le=32, description="word shingle size for MinHash")
    heldout_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of documents fixed (by hash) as held-out eval data"
    )
    max_json_depth: int = Field(16, ge=2, le=1000, description="JSONL lines nested deeper than this are rejected")
    workers: int = Field(
        2,
        ge=1,
        le=64,
        description="analysis processes per scan, at most one per CPU (1 = none; results do not depend on it)",
    )
    parallel_min_mb: float = Field(
        4.0,
        ge=0,
        description="new or changed MB a scan needs before it starts workers",
    )

    @field_validator("readers", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        # A config adds a suffix (".rst" = "md") without restating the defaults.
        return {**DEFAULT_READERS, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _bounds(self) -> "IngestConfig":
        if self.min_chars >= self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must be below max_chars ({self.max_chars})")
        bad = [e for e in self.readers if not e.startswith(".") or e != e.lower()]
        if bad:
            raise ValueError(f"readers: suffixes are lower case and start with a dot, got {bad}")
        return self


class ModelConfig(Section):
    """The model: a scratch GPT-2 sized here, or a pretrained base (local dir, cached hub id, GGUF file)."""

    base: str = Field(
        "scratch",
        description=(
            '"scratch" (GPT-2 built from the sizes below), a local Hugging Face model dir, a model id already in the '
            "local Hugging Face cache (never downloaded), or a .gguf file (converted once into the state dir)"
        ),
    )
    vocab_size: int = Field(
        2048, ge=300, le=1_000_000, description="scratch: byte-level BPE vocabulary trained on the corpus"
    )
    n_layer: int = Field(4, ge=1, le=96, description="scratch: transformer blocks")
    n_head: int = Field(4, ge=1, le=128, description="scratch: attention heads")
    n_embd: int = Field(128, ge=8, le=16384, description="scratch: hidden width (divisible by n_head)")
    n_positions: int = Field(256, ge=16, le=131072, description="scratch: context length in tokens")
    dropout: float = Field(0.0, ge=0, lt=1, description="scratch: residual, embedding and attention dropout")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto: cuda if present, else cpu")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: fp32 on CPU (bf16 is ~30x slower here), bf16 on GPU"
    )
    lora: bool | Literal["auto"] = Field(
        "auto",
        description=(
            'train LoRA adapters (peft) instead of all weights: true, false, or "auto" (a pretrained base of at '
            "least lora_min_params parameters); generations are saved merged, in the base's dtype"
        ),
    )
    lora_min_params: int = Field(50_000_000, ge=0, description='lora = "auto": LoRA from this many parameters up')
    lora_r: int = Field(8, ge=1, description="LoRA rank")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha (the update is scaled by alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA path")
    lora_target_modules: list[str] = Field(
        default_factory=list,
        description=(
            'module names to adapt, e.g. ["q_proj", "k_proj", "v_proj", "o_proj"], or ["all-linear"]; '
            "[] = peft's default for the architecture"
        ),
    )
    keep_generations: int = Field(
        5, ge=2, description="keep this many newest generations (the champion and its predecessor are always kept)"
    )

    @model_validator(mode="after")
    def _heads(self) -> "ModelConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class ReworkConfig(Section):
    """How the current model rewrites, synthesizes and solves each cycle."""

    enabled: bool = Field(True, description="let the current model rework and synthesize data each cycle")
    candidates_per_cycle: int = Field(64, ge=0, description="candidate budget per cycle, split by the shares below")
    rewrite_share: float = Field(0.5, ge=0, le=1, description="share of the budget for rewrites of existing samples")
    synthesize_share: float = Field(
        0.25, ge=0, le=1, description="share for new samples from seed prompts / free continuation"
    )
    solve_share: float = Field(0.25, ge=0, le=1, description="share for solving verifiable tasks (best-of-n)")
    samples_per_prompt: int = Field(4, ge=1, le=64, description="n samples per prompt (best-of-n)")
    batch_size: int = Field(16, ge=1, le=1024, description="generation batch size (batching is ~6x faster on CPU)")
    max_new_tokens: int = Field(96, ge=1, description="tokens generated per sample")
    temperature: float = Field(0.8, ge=0, le=5, description="sampling temperature (0 = greedy)")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling")
    prefix_fraction: float = Field(
        0.5, gt=0, lt=1, description="rewrite: keep this share of the sample as prompt, regenerate the rest"
    )
    rewrite_prompt: str = Field(
        "Rewrite the following text more clearly and fix its errors. Keep its meaning. "
        "Reply with the rewritten text only.\n\n{text}",
        description="instruction mode: the rewrite request ({text} is the passage), sent as a user turn",
    )
    synthesize_prompt: str = Field(
        "Read the text below. Write one question that it answers, then the answer, in this form:\n"
        "Question: ...\nAnswer: ...\n\n{text}",
        description="instruction mode: asks for a question/answer pair about a passage ({text}); it trains as a chat",
    )
    instruction_following: bool | Literal["auto"] = Field(
        "auto",
        description=(
            "ask through the chat template with the prompts above (true), continue prefixes (false, small scratch "
            'models), or "auto": true when the model has a chat template of its own'
        ),
    )
    seed: int = Field(0, description="sampling seed (mixed with the cycle number)")


class JudgeConfig(Section):
    """The eval space: judge pipelines per candidate kind, A-vs-B scoring, diversity floor."""

    text: list[str] = Field(
        default_factory=lambda: ["text_quality", "a_vs_b", "doc_quality"],
        description="judge pipeline for text candidates",
    )
    chat: list[str] = Field(
        default_factory=lambda: ["text_quality", "a_vs_b", "doc_quality"],
        description="judge pipeline for chat candidates",
    )
    python: list[str] = Field(
        default_factory=lambda: ["text_quality", "python"], description="judge pipeline for Python candidates"
    )
    task: list[str] = Field(default_factory=lambda: ["task"], description="judge pipeline for task answers")
    ab_scorers: list[str] = Field(
        default_factory=lambda: ["fluency", "quality", "faithful"],
        description="A-vs-B scorers: fluency (ngram or hf reference: log-odds over the unigram of orig/), quality, "
        "faithful (B keeps what A says: chrF and A's words), perplexity, external",
    )
    ab_min_margin: float = Field(0.0, ge=0, description="B must beat A by more than this (relative) to be accepted")
    ab_fluency_margin: float = Field(
        0.0, ge=0, description="fluency: B must beat A by more than this many nats per token"
    )
    ab_fluency_tie: float = Field(
        0.3,
        ge=0,
        description="fluency: a B that passes the quality rules its A fails wins unless it is this many nats per "
        "token less fluent",
    )
    ab_min_faithful: float = Field(
        50.0,
        ge=0,
        le=100,
        description="faithful: B's chrF against A (sacrebleu: character n-grams, lowercased, recall-weighted) must be "
        "at least this; a fluent B that drops or replaces what A says loses",
    )
    ab_min_word_recall: float = Field(
        0.9,
        ge=0,
        le=1,
        description="faithful: the share of A's distinct words that B keeps (case-insensitive; a word within a typo "
        "of one in B, or with its letters re-spaced, counts) must be at least this; a B that drops a clause loses",
    )
    diversity_floor: float = Field(
        0.2, ge=0, le=1, description="a batch whose distinct-2 ratio is below this is not admitted"
    )
    external_url: str = Field(
        "", description="OpenAI-compatible endpoint on localhost for an external judge model (optional)"
    )
    pairwise_model: str = Field("judge", description="pairwise judge: the model name sent to judge.external_url")
    pairwise_system: str = Field(
        "You are a careful, strict judge of writing. You compare two continuations of the same text.",
        description="pairwise judge: the system prompt",
    )
    pairwise_prompt: str = Field(
        "Text: {prompt}\n\nResponse 1: {first}\n\nResponse 2: {second}\n\n"
        "Which response continues the text better: fluent, correct and faithful to it? "
        "Answer with 1, 2 or tie and nothing else.",
        description="pairwise judge: the question, asked twice with the responses swapped ({prompt} {first} {second})",
    )
    reference: Literal["ngram", "hf", "endpoint"] = Field(
        "ngram",
        description="A-vs-B reference, never the model being judged: ngram (built from orig/ only, cached in the "
        "state dir), hf (a frozen model: judge.reference_path), endpoint (OpenAI-compatible, on localhost)",
    )
    reference_order: int = Field(4, ge=2, le=8, description="ngram reference: n-gram order")
    reference_vocab: int = Field(4000, ge=300, le=65536, description="ngram reference: byte-level BPE vocabulary size")
    reference_folds: int = Field(
        2, ge=2, le=10, description="ngram reference: folds; a candidate is scored by folds that never saw its sources"
    )
    reference_path: str = Field(
        "",
        description=(
            "hf reference: a frozen model outside the state dir: a local Hugging Face dir, a model id in the local "
            "cache, or a .gguf file (converted once)"
        ),
    )
    reference_url: str = Field("", description="endpoint reference: OpenAI-compatible /v1/completions on localhost")
    doc_rules: list[DocRule] = Field(
        default_factory=lambda: list(DOC_RULES),
        description="doc_quality judge: Gopher / C4 / FineWeb rules (datatrove) applied to rework candidates",
    )
    doc_rules_max_orig_drop: float = Field(
        0.05,
        ge=0,
        le=1,
        description="a doc rule that would drop more than this share of orig/ is reported and not applied",
    )
    python_require_tests: bool = Field(
        False, description="python judge: reject code that has no tests or doctests to run"
    )

    @field_validator("pairwise_prompt")
    @classmethod
    def _pairwise_fields(cls, v: str) -> str:
        try:
            v.format(prompt="", first="", second="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"may use only {{prompt}}, {{first}} and {{second}} (and {{{{ }}}} for braces): {e}")
        if "{first}" not in v or "{second}" not in v:
            raise ValueError("must show both responses: {first} and {second}")
        return v


class SandboxConfig(Section):
    """Where model-written code runs: isolation backend and per-job limits."""

    backend: Literal["auto", "docker", "bwrap", "process"] = Field(
        "auto", description="auto picks docker > bwrap > process"
    )
    image: str = Field(
        "selfloop-sandbox:latest",
        description="docker image (built locally when missing or outdated, or by `selfloop sandbox build`)",
    )
    docker_host: str = Field("", description="remote Docker engine (else DOCKER_HOST / local socket)")
    timeout_s: float = Field(10.0, gt=0, le=3600, description="wall and CPU limit per job")
    memory_mb: int = Field(512, ge=16, description="address-space / memory limit per job")
    pids: int = Field(64, ge=4, description="process limit per job")
    file_mb: int = Field(64, ge=1, description="largest file a job may write; also its scratch size")
    output_kb: int = Field(1024, ge=1, description="stdout/stderr kept per job")
    cpus: float = Field(1.0, gt=0, description="CPU quota per job (docker)")
    pool_size: int = Field(2, ge=0, description="warm workers (0 = one-shot sandboxes only)")
    recycle_after: int = Field(200, ge=1, description="a warm worker is replaced after this many jobs")
    nofile: int = Field(64, ge=16, description="open files per job process")
    startup_timeout_s: float = Field(
        60.0, gt=0, description="a sandbox worker must be ready within this (container start)"
    )
    python: str = Field(
        "",
        description="interpreter in bwrap/process sandboxes and the image (default /usr/bin/python3, else this one)",
    )


class LauncherConfig(Section):
    """How the training child process is started (python, torchrun, accelerate)."""

    kind: Literal["python", "torchrun", "accelerate"] = Field(
        "python",
        description="how the training child starts: python (one process), torchrun or accelerate",
    )
    nproc_per_node: int = Field(
        1, ge=1, description="processes per node (torchrun / accelerate); on GPUs one per GPU, on CPU each uses gloo"
    )
    nnodes: int = Field(1, ge=1, description="nodes; more than 1 needs rdzv_endpoint")
    node_rank: int = Field(
        0, ge=0, description="this node's rank (accelerate multi-node; torchrun assigns ranks at rendezvous)"
    )
    rdzv_endpoint: str = Field(
        "", description="rendezvous host:port for multi-node (empty on one node: a free local port is picked)"
    )
    extra_args: list[str] = Field(
        default_factory=list, description="extra launcher arguments (e.g. accelerate's --use_fsdp or --config_file)"
    )

    @model_validator(mode="after")
    def _multi_node(self) -> "LauncherConfig":
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"nnodes = {self.nnodes} needs rdzv_endpoint (host:port of the rendezvous on node 0)")
        if self.rdzv_endpoint and not self.rdzv_endpoint.rpartition(":")[2].isdigit():
            raise ValueError(f"rdzv_endpoint {self.rdzv_endpoint!r} must be host:port")
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank ({self.node_rank}) must be below nnodes ({self.nnodes})")
        return self


class PreferenceConfig(Section):
    """Preference training (DPO, TRL) on the judged chosen / rejected pairs, after the SFT step of a cycle."""

    enabled: Literal["auto"] | bool = Field(
        "auto",
        description='DPO on judged pairs after SFT: true, false or "auto" (on with CUDA)',
    )
    beta: float = Field(
        0.1, gt=0, le=10, description="DPO beta: how far the policy may move from the SFT model (higher = closer)"
    )
    steps: int = Field(50, ge=1, description="DPO optimizer steps")
    learning_rate: float = Field(5e-5, gt=0, lt=1, description="DPO peak learning rate")
    batch_size: int = Field(8, ge=1, description="pairs per DPO step")
    share: float = Field(1.0, gt=0, le=1, description="share of the stored pairs used (the newest first)")
    max_pairs: int = Field(2000, ge=1, description="at most this many pairs per run")
    sources: list[Literal["a_vs_b", "task"]] = Field(
        default_factory=lambda: ["a_vs_b", "task"],
        description="which judged pairs are used: A-vs-B rewrites, correct vs wrong task answers",
    )


class SearchConfig(Section):
    """Recipe search: each cycle trains several challenger recipes; the gate's best becomes the next cycle's start."""

    enabled: bool = Field(
        False, description="train several recipes per cycle (each costs a training run and an evaluation)"
    )
    recipes: int = Field(
        3,
        ge=2,
        le=16,
        description="recipes per cycle: the incumbent and its mutants",
    )
    params: list[Literal["learning_rate", "max_steps", "rework_max_share"]] = Field(
        default_factory=lambda: ["learning_rate", "max_steps", "rework_max_share"],
        description="what the mutants change",
    )
    budget_steps: int = Field(
        300,
        ge=1,
        description="training steps of all recipes in one cycle (the incumbent always trains)",
    )
    lr_factor: float = Field(
        3.0, gt=1, le=100, description="a mutant's learning rate is the incumbent's times or divided by this"
    )
    lr_min: float = Field(1e-5, gt=0, lt=1, description="learning-rate bounds of the search")
    lr_max: float = Field(1e-1, gt=0, lt=1, description="learning-rate bounds of the search")
    steps_factor: float = Field(
        1.5, gt=1, le=10, description="a mutant's max_steps is the incumbent's times or divided by this"
    )
    steps_min: int = Field(10, ge=1, description="max_steps bounds of the search")
    steps_max: int = Field(1000, ge=1, description="max_steps bounds of the search")
    share_delta: float = Field(
        0.1, gt=0, le=1, description="a mutant's rework_max_share is the incumbent's plus or minus this (within 0..1)"
    )
    seed: int = Field(0, description="seed of the proposals (with the cycle number)")

    @model_validator(mode="after")
    def _bounds(self) -> "SearchConfig":
        if self.lr_min > self.lr_max:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr_max ({self.lr_max})")
        if self.steps_min > self.steps_max:
            raise ValueError(f"steps_min ({self.steps_min}) must not exceed steps_max ({self.steps_max})")
        if not self.params:
            raise ValueError("params must name at least one of learning_rate, max_steps, rework_max_share")
        return self


# The Trainer's logging integrations (transformers' INTEGRATION_TO_CALLBACK; a test keeps them in step).
REPORT_TO = frozenset(
    {
        "azure_ml",
        "clearml",
        "codecarbon",
        "comet_ml",
        "dagshub",
        "dvclive",
        "flyte",
        "kubeflow",
        "mlflow",
        "neptune",
        "swanlab",
        "tensorboard",
        "trackio",
        "wandb",
    }
)


class TrainConfig(Section):
    """Training a challenger on the mixture of original and accepted rework data."""

    gen0_steps: int = Field(
        600, ge=1, description="pretraining steps for generation 0 (1.5-4 minutes at the default size on 2 CPU cores)"
    )
    max_steps: int = Field(100, ge=1, description="steps per challenger")
    max_minutes: float = Field(10.0, gt=0, description="wall budget per training run")
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="peak learning rate")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="learning-rate schedule"
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of steps spent warming up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    batch_size: int = Field(16, ge=1, description="sequences per device step")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    block_size: int = Field(128, ge=8, description="tokens per training sequence (<= model.n_positions)")
    seed: int = Field(1234, description="training seed")
    rework_weight: float = Field(1.0, ge=0, description="sampling weight of rework relative to orig")
    rework_max_share: float = Field(
        0.5, ge=0, le=1, description="cap on rework's share of the mixture (orig is never dropped)"
    )
    init_from: Literal["champion", "base"] = Field(
        "champion", description="continue from the champion, or restart from generation 0 each time (ReST-EM)"
    )
    save_steps: int = Field(50, ge=1, description="Trainer checkpoint interval (resume point)")
    eval_batches: int = Field(16, ge=1, description="held-out batches per evaluation")
    eval_samples: int = Field(
        3, ge=0, description="greedy sample generations from held-out starts kept in each manifest"
    )
    eval_sample_tokens: int = Field(48, ge=1, description="tokens generated per evaluation sample")
    log_steps: int = Field(10, ge=1, description="report step, loss, lr, tokens/s and ETA every this many steps")
    report_to: str | list[str] = Field(
        "none",
        description='also log to the Trainer\'s integrations: "none", "all" (those installed), a name or a list '
        '("tensorboard", "wandb", "mlflow", ...); TensorBoard\'s logs are kept in logs/ beside each generation',
    )
    streaming: bool = Field(
        False,
        description="tokenize while training reads instead of writing an Arrow cache (tokens larger than the disk)",
    )
    shuffle_buffer: int = Field(
        4096, ge=1, description="streaming: examples held in the shuffle buffer (memory grows with it)"
    )
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)

    @field_validator("report_to")
    @classmethod
    def _known_integrations(cls, v: str | list[str]) -> str | list[str]:
        names = [v] if isinstance(v, str) else v
        unknown = [n for n in names if n not in REPORT_TO | {"none", "all"}]
        if unknown:
            raise ValueError(f"unknown integration {unknown[0]!r}; known: none, all, {', '.join(sorted(REPORT_TO))}")
        if len(names) > 1 and {"none", "all"} & set(names):
            raise ValueError('"none" and "all" stand alone, not in a list')
        return v


class GateConfig(Section):
    """When a challenger replaces the champion: paired tests on the same held-out questions and documents.

    Rule in ``selfloop.train.gate.decide``: task pass@1 from per-question outcomes on the gate split
    (exact McNemar, non-inferiority at mastered levels), the text/chat loss from a paired bootstrap over examples.
    """

    loss_tolerance: float = Field(
        0.0,
        ge=0,
        le=1,
        description="extra slack on the loss guard: reject when the whole 95 % interval of the relative text/chat "
        "loss change is above this (0: worse beyond noise)",
    )
    task_tolerance: float = Field(
        0.02, ge=0, le=1, description="deprecated, unused (the paired gate uses noninferiority_margin); still accepted"
    )
    min_improvement: float = Field(
        0.001,
        ge=0,
        description="an improvement must also be at least this: the loss interval's upper bound below -this "
        "(relative), or the pass@1 difference at least this (absolute)",
    )
    noninferiority_margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="at a family's mastered levels (champion pass@1 >= tasks.advance_threshold) the lower bound of "
        "the 95 % interval of challenger - champion pass@1 must be at least -this",
    )
    alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="one-sided exact McNemar level for 'better' pass@1, split evenly between the families (Bonferroni)",
    )
    bootstrap_samples: int = Field(
        2000, ge=100, le=100_000, description="resamples of the paired bootstrap over held-out loss examples"
    )
    seed: int = Field(0, description="seed of the paired bootstrap (the same figures give the same decision)")


class TasksConfig(Section):
    """Verifiable task packs: generated families, held-out pass@1, the curriculum, and solving (best-of-n, tool use)."""

    enabled: bool = Field(True, description="solve tasks during rework and measure held-out pass@1 in every evaluation")
    families: list[str] = Field(
        default_factory=lambda: ["addition", "reverse"],
        description="generated task families (task files in orig/ may add any family)",
    )
    modes: list[Literal["answer", "program"]] = Field(
        default_factory=lambda: ["answer", "program"],
        description='answer modes: "answer" (direct) and/or "program" (Python run in the sandbox)',
    )
    digit_format: Literal["reversed", "plain"] = Field(
        "reversed",
        description="digits of direct answers: spaced, least significant first (reversed) or as written (plain)",
    )
    samples_per_task: int = Field(
        4, ge=1, le=64, description="best-of-n: samples per task and mode, each checked in the sandbox"
    )
    max_new_tokens: int = Field(40, ge=4, description="tokens generated per answer or program")
    temperature: float = Field(0.7, ge=0, le=5, description="sampling temperature when solving (evaluation is greedy)")
    max_difficulty: int = Field(
        6, ge=1, le=64, description="largest difficulty generated, evaluated and reached by the curriculum"
    )
    heldout_per_level: int = Field(
        8, ge=1, le=1000, description="held-out tasks per family and difficulty (fixed, seeded; never trained on)"
    )
    heldout_seed: int = Field(0, description="seed of the fixed held-out task set (changing it changes the benchmark)")
    gate_per_level: int = Field(
        8,
        ge=1,
        le=1000,
        description="gate-split tasks per family and difficulty: the gate decides on these, disjoint from the "
        "reported held-out set (fixed, seeded; never trained on). More questions show smaller differences "
        "(about 1/sqrt(n)) and cost evaluation time for both models every cycle",
    )
    gate_seed: int = Field(0, description="seed of the fixed gate split (tasks also in the reported set are left out)")
    loss_max_difficulty: int = Field(
        0,
        ge=0,
        description="largest generated difficulty in the held-out loss (0 = max_difficulty)",
    )
    start_level: int = Field(
        0,
        ge=0,
        description="a family's first curriculum level (0 = one above its hardest labelled task)",
    )
    solve_window: int = Field(
        3,
        ge=1,
        description="levels new problems are drawn from, the curriculum level and those just below",
    )
    advance_threshold: float = Field(
        0.9,
        ge=0,
        le=1,
        description="held-out pass@1 at its level a family needs to advance",
    )
    min_label_accuracy: float = Field(
        0.3,
        ge=0,
        le=1,
        description="share of sampled answers at its level judged correct a family needs to advance",
    )
    curriculum_modes: list[Literal["answer", "program"]] = Field(
        default_factory=lambda: ["answer"], description="answer modes whose held-out pass@1 drives the curriculum"
    )
    rationalize: bool = Field(
        True,
        description="retry unsolved tasks that have a reference answer with it as a hint (STaR)",
    )

    @model_validator(mode="after")
    def _known(self) -> "TasksConfig":
        unknown = [f for f in self.families if f not in TASK_FAMILIES]
        if unknown:
            raise ValueError(f"unknown task families {unknown} (known: {', '.join(sorted(TASK_FAMILIES))})")
        if not self.modes:
            raise ValueError("modes must name at least one of answer, program")
        return self


class FrontierConfig(Section):
    """Frontier growth: a digit-level model labels generated problems one level past what it masters."""

    enabled: bool = Field(True, description="grow a frontier model on the families below (steps between cycles)")
    pause_s: float = Field(5.0, ge=0, description="seconds between two frontier steps")
    families: list[str] = Field(
        default_factory=lambda: ["addition"],
        description=(
            "families: a built-in name (addition, subtraction, reverse), an entry point of group selfloop.families"
            ' or a plugin "module:object" (validate-config imports it)'
        ),
    )
    label_sources: list[Literal["self", "tool", "oracle"]] = Field(
        default_factory=lambda: ["self", "tool"],
        description=(
            "who may select a frontier label, tried in order: self (model-internal checks), tool (the model's"
            " program run in the sandbox, key-free checks) or oracle (an answer key)"
        ),
    )
    family_sources: dict[str, list[Literal["self", "tool", "oracle"]]] = Field(
        default_factory=dict, description='label_sources for one family, by its name (e.g. {reverse = ["self"]})'
    )
    program_share: float = Field(
        0.2, ge=0, lt=1, description="share of training batches that teach writing programs (tool needs > 0)"
    )
    tool_chunk: int = Field(256, ge=1, description="tool: programs written and run per chunk")
    labelled_max: int = Field(4, ge=1, description="generation 0 learns levels 1..this from generator labels")
    max_level: int = Field(16, ge=2, description="the frontier stops here")
    position: Literal["nope", "learned", "offset"] = Field(
        "nope", description="position signal: none (NoPE), learned, or learned with random offsets in training"
    )
    n_layer: int = Field(4, ge=1, description="transformer blocks")
    n_head: int = Field(4, ge=1, description="attention heads")
    n_embd: int = Field(128, ge=8, description="hidden width (divisible by n_head)")
    n_positions: int = Field(
        128, ge=16, description="context length in tokens (offset mode draws offsets in it; programs need ~4x level)"
    )
    batch_size: int = Field(64, ge=1, description="sequences per step")
    gen0_steps: int = Field(6000, ge=1, description="generation 0 steps on streamed generator-labelled problems")
    gen0_lr: float = Field(2e-3, gt=0, description="generation 0 peak learning rate")
    gen0_warmup: int = Field(200, ge=0, description="generation 0 warmup steps")
    round_steps: int = Field(300, ge=1, description="steps per round, continuing from the champion's optimizer")
    round_lr: float = Field(1e-3, gt=0, description="peak learning rate of a round")
    round_warmup: int = Field(25, ge=0, description="warmup steps of a round")
    decay_fraction: float = Field(0.25, gt=0, le=1, description="warmup-stable-decay: share of steps decaying to 0")
    new_share: float = Field(0.5, gt=0, lt=1, description="the newest round's share of a round's mixture")
    candidates_chunk: int = Field(3000, ge=1, description="frontier problems labelled per chunk")
    candidates_max: int = Field(9000, ge=1, description="at most this many frontier problems per round")
    min_kept: int = Field(200, ge=1, description="label chunks until this many are kept (or candidates_max)")
    advance_yield: float = Field(0.3, gt=0, le=1, description="advance when this share of candidates is kept")
    fixed_advance: bool = Field(False, description="advance one level every round, whatever the yield")
    max_holds: int = Field(4, ge=1, description="report saturation after this many holds in a row")
    checks: bool = Field(True, description="self: keep a label only if the family's equivalent prompts agree")
    samples: int = Field(0, ge=0, description="self: also sample this many answers and vote (0 = off)")
    vote_threshold: float = Field(0.7, gt=0, le=1, description="self: share of samples that must agree")
    temperature: float = Field(0.7, gt=0, description="self: sampling temperature of the vote")
    agree_previous: bool = Field(False, description="self: the previous generation must give the same answer")
    test_per_level: int = Field(500, ge=1, description="reported test problems per level (from test_seed)")
    test_seed: int = Field(987654321, description="seed of the test problems; no round ever draws from it")
    gate_per_level: int = Field(300, ge=1, description="gate problems per level (disjoint from the test problems)")
    gate_seed: int = Field(1, description="seed of the gate problems")
    mastery: float = Field(0.9, gt=0, le=1, description="a level the champion answers this well is mastered")
    noninferiority_margin: float = Field(
        0.02, ge=0, le=1, description="gate: on mastered levels the challenger may lose at most this (95 % bound)"
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="gate: one-sided exact McNemar level at the round's level")
    keep_generations: int = Field(5, ge=2, description="frontier generations kept per family (champion always)")
    seed: int = Field(0, description="seed of generation 0, candidates and mixtures")

    @model_validator(mode="after")
    def _shape(self) -> "FrontierConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.max_level <= self.labelled_max:
            raise ValueError(f"max_level ({self.max_level}) must exceed labelled_max ({self.labelled_max})")
        return self


class ScheduleConfig(Section):
    """When cycles run."""

    # Upper bounds: the scheduler turns these into datetimes and thread waits, which overflow.
    interval_minutes: float = Field(30.0, gt=0, le=525_600, description="run a cycle at least this often")
    cron: str = Field("", description="crontab expression instead of the interval (e.g. '0 * * * *')")
    min_new_documents: int = Field(1, ge=1, description="new settled documents that pull the next cycle forward")
    min_gap_s: float = Field(60.0, ge=0, description="minimum time between two cycles")
    misfire_grace_s: float = Field(300.0, ge=0, le=604_800, description="a late cycle still runs within this grace")
    stop_timeout_s: float = Field(60.0, gt=0, le=86_400, description="graceful stop budget on SIGTERM before forcing")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if value:
            # Checked here, by the parser the daemon uses: a bad expression would otherwise
            # stop the daemon at startup, or on SIGHUP after it passed validation.
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value)
            except ValueError as e:
                raise ValueError(f"not a crontab expression (minute hour day month weekday): {e}") from None
        return value


class DashboardConfig(Section):
    """The live terminal view."""

    refresh_per_second: float = Field(2.0, gt=0, le=30, description="live view refresh rate")
    recent_events: int = Field(12, ge=1, description="events shown")
    samples: int = Field(3, ge=0, description="sample generations shown")


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter="__", validate_assignment=True
    )

    paths: PathsConfig = Field(default_factory=PathsConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    rework: ReworkConfig = Field(default_factory=ReworkConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    tasks: TasksConfig = Field(default_factory=TasksConfig)
    frontier: FrontierConfig = Field(default_factory=FrontierConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so it overrides the file; no dotenv or secrets dirs.
        return env_settings, init_settings

    @model_validator(mode="after")
    def _cross(self) -> "Config":
        if self.model.base == "scratch" and self.train.block_size > self.model.n_positions:
            raise ValueError(
                f"train.block_size ({self.train.block_size}) exceeds model.n_positions ({self.model.n_positions})"
            )
        return self


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class ProjectPaths:
    """Absolute locations derived from a config and the directory it lives in."""

    root: Path
    orig: Path
    rework: Path
    state: Path

    @classmethod
    def of(cls, cfg: Config, root: Path) -> "ProjectPaths":
        root = root.resolve()
        return cls(
            root=root,
            orig=(root / cfg.paths.orig).resolve(),
            rework=(root / cfg.paths.rework).resolve(),
            state=(root / cfg.paths.state).resolve(),
        )

    @property
    def db(self) -> Path:
        return self.state / "state.db"

    @property
    def lock(self) -> Path:
        return self.state / "daemon.lock"

    @property
    def models(self) -> Path:
        return self.state / "models"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def runs(self) -> Path:
        """Scratch for training runs (Trainer checkpoints live here until promoted or pruned)."""
        return self.state / "runs"

    @property
    def frontier(self) -> Path:
        """The frontier models, one directory of generations per family."""
        return self.state / "frontier"

    @property
    def frontier_rework(self) -> Path:
        """The frontier's kept labels: rework for the frontier model, never ingested for the text model."""
        return self.rework / "frontier"


# --------------------------------------------------------------------------- loading


def load_config(path: Path | str | None = None, *, env: bool = True) -> tuple[Config, ProjectPaths]:
    """Read, validate and resolve a config file. Raises ConfigError with one line per problem.

    Environment overrides ``SELFLOOP_<SECTION>__<KEY>=value`` (for example
    ``SELFLOOP_TRAIN__MAX_STEPS=50``) take precedence over the file (unless ``env`` is false).
    """
    path = Path(path) if path is not None else Path("config.toml")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (create one with `selfloop init`)") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    cfg = parse_config(raw, source=str(path), env=env)
    return cfg, ProjectPaths.of(cfg, path.resolve().parent)


def parse_config(raw: dict[str, Any], *, source: str = "config", env: bool = True) -> Config:
    """Validate a raw mapping (already parsed TOML) into a Config."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a table")
    saved = None
    if not env:
        # BaseSettings always reads the environment; hide our prefix when asked not to.
        saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(ENV_PREFIX)}
    try:
        return Config(**raw)
    except ValidationError as e:
        raise ConfigError("\n".join(format_errors(e, source)), lines=format_errors(e, source)) from None
    except TypeError as e:  # e.g. a non-string key
        raise ConfigError(f"{source}: {e}") from None
    except SettingsError as e:  # an environment override that is not JSON where a list or table is expected
        names = ", ".join(sorted(k for k in os.environ if k.startswith(ENV_PREFIX))) or ENV_PREFIX + "*"
        raise ConfigError(
            f"{source}: environment override ({names}): {e}; list and table values must be JSON, "
            """e.g. '["a", "b"]'"""
        ) from None
    finally:
        if saved:
            os.environ.update(saved)


def deprecations(cfg: Config) -> list[str]:
    """What a valid config sets that no longer has an effect, one line each (``selfloop validate-config``)."""
    out = []
    if cfg.ingest.extensions is not None:
        out.append(
            "ingest.extensions is deprecated and ignored: every file that decodes as text is ingested; "
            "[ingest.readers] picks the reader by suffix, watch.ignore leaves files out"
        )
    return out


def format_errors(err: ValidationError, source: str) -> list[str]:
    """One line per error: file, dotted key, bad value, and what is allowed."""
    lines = []
    for e in err.errors(include_url=False):
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc) or "(top level)"
        value = e.get("input")
        shown = _short(value)
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(loc[:-1])
            hint = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.6)
            fix = (
                f'did you mean "{".".join(loc[:-1] + [hint[0]])}"?'
                if hint
                else f"allowed keys here: {', '.join(allowed)}"
            )
            lines.append(f"{source}: unknown key {key}: {fix}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {key} = {shown}: {msg}")
    return lines


def render_toml(cfg: Config | None = None) -> str:
    """The config as commented TOML: each key preceded by its description.

    The shipped config.toml is this rendering of the defaults (a test checks it),
    so the pydantic models stay the single source of defaults and documentation.
    """
    import tomli_w  # only needed when writing a config

    cfg = cfg or Config()
    out = [
        "# selfloop configuration. Every key is optional; the values below are the defaults.",
        "# Paths are relative to this file. Check it with `selfloop validate-config`.",
        "# Any key can be overridden from the environment: SELFLOOP_<SECTION>__<KEY>=value.",
    ]

    def section(name: str, model: BaseModel) -> None:
        doc = (type(model).__doc__ or "").strip().splitlines()
        out.append("")
        out.append(f"[{name}]")
        if doc:
            out.append(f"# {doc[0]}")
        nested, tables = [], []
        for key, field in type(model).model_fields.items():
            value = getattr(model, key)
            if field.exclude:  # deprecated: read, never written
                continue
            if isinstance(value, BaseModel):
                nested.append((f"{name}.{key}", value))
                continue
            if isinstance(value, dict):  # a table: after the section's plain keys, as TOML requires
                tables.append((f"{name}.{key}", field.description, value))
                continue
            if field.description:
                out.append(f"# {field.description}")
            out.append(tomli_w.dumps({key: value}).rstrip())
        for table, description, value in tables:
            out.extend(["", f"[{table}]", f"# {description}"])
            if value:
                out.append(tomli_w.dumps(value).rstrip())
        for sub_name, sub in nested:
            section(sub_name, sub)

    for name in type(cfg).model_fields:
        section(name, getattr(cfg, name))
    return "\n".join(out) + "\n"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fields_at(loc: list[str]) -> list[str]:
    """Field names of the (sub)model at a dotted location, for suggestions."""
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return sorted(model.model_fields)
