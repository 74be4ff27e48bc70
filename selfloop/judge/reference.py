"""The A-vs-B reference: how likely a continuation is, under a model that is never the one being judged.

``judge.reference`` picks one:

- ``ngram`` (the default; offline, seconds on two cores): a subword n-gram language model built from the
  train-split text and chat documents of ``orig/`` only (never rework, never held-out documents), cached in the
  state dir under a fingerprint of those documents and rebuilt when they change.
- ``hf``: a frozen model (``judge.reference_path``: a local Hugging Face dir, a model id in the local cache, or a
  GGUF file, converted once); refused when it lies in the state dir, where the generations the loop trains (the
  authors) live.
- ``endpoint``: an OpenAI-compatible ``/v1/completions`` on localhost (``judge.reference_url``), asked for the
  log-probabilities of the prompt and continuation (``echo``, ``max_tokens = 0``).

Why ``nltk.lm.WittenBellInterpolated`` over a byte-level BPE vocabulary trained with ``tokenizers``: kenlm's pip
package queries ARPA models but cannot build them (``lmplz`` is a separate C++ program); nltk's
``KneserNeyInterpolated`` took 3 s to score 54 tokens on the starter corpus where Witten-Bell took 5 ms, for the
same 5 s fit; and over words, every typo would be one ``<UNK>`` as likely as the corpus's hapaxes, whereas
byte-level subwords make a misspelling a run of rare pieces and a newline a token of its own.

The ``fluency`` scorer (SLOR) also needs word frequencies: the n-gram model's own unigram, or for a model reference
the token counts of the same orig/ documents under its tokenizer (``load_unigram``, cached), over the tokens
``counted_tokens`` keeps (no blanks, no repeats: a model predicts those from its context, and the document rules
judge them).

Cross-fitting: documents fall into ``judge.reference_folds`` folds by id, one model per fold. A candidate whose
sources are known (``source_ids``) is scored by the folds that never saw them; otherwise its original A, a
document the model memorized, would always win.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import urllib.error
import urllib.request
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from selfloop.config import JudgeConfig, ProjectPaths
from selfloop.errors import ConfigError, SelfloopError
from selfloop.store import Store
from selfloop.store.corpus import reference_documents

log = logging.getLogger(__name__)

BOS = "<s>"
CACHE_DIR = "judge"
# Bumped when the way the n-gram reference is built changes, so an old cache is not reused.
NGRAM_SCHEME = "bpe-wittenbell-1"


class Reference(Protocol):
    name: str

    def nll(
        self, prompts: Sequence[str], continuations: Sequence[str], sources: Sequence[Sequence[int]] | None = None
    ) -> list[float]:
        """Mean negative log-likelihood (nats per token) of each continuation given its prompt; inf when empty,
        nan when the reference could not score it."""
        ...


def document_text(kind: str, content: str) -> str:
    """The words of a stored document: its text, or a chat record's message contents one per line."""
    if kind != "chat":
        return content
    try:
        return "\n".join(str(m.get("content", "")) for m in json.loads(content)["messages"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


# --------------------------------------------------------------------------- ngram


@dataclass
class NgramReference:
    """One Witten-Bell n-gram model per fold over a byte-level BPE vocabulary trained on the same documents."""

    tokenizer: Any  # tokenizers.Tokenizer
    models: list[Any]  # nltk.lm.WittenBellInterpolated, one per fold
    order: int
    fingerprint: str
    floor: float  # probability of a token no fold ever saw: less than once in the training tokens
    n_docs: int = 0
    n_tokens: int = 0
    name: str = field(default="ngram", init=False)

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(text).tokens if text else []

    def folds_for(self, sources: Sequence[int] | None) -> list[int]:
        """The folds that never saw any of ``sources``; all of them when none is left or none is known."""
        k = len(self.models)
        seen = {int(s) % k for s in sources or ()}
        return [f for f in range(k) if f not in seen] or list(range(k))

    def nll(
        self, prompts: Sequence[str], continuations: Sequence[str], sources: Sequence[Sequence[int]] | None = None
    ) -> list[float]:
        return [n for n, _ in self.scores(prompts, continuations, sources)]

    def scores(
        self, prompts: Sequence[str], continuations: Sequence[str], sources: Sequence[Sequence[int]] | None = None
    ) -> list[tuple[float, float]]:
        """(mean NLL, mean unigram NLL) per continuation, in nats per token; (inf, inf) when it is empty.

        Their difference is the SLOR of Lau, Clark and Lappin (2017): how much likelier the n-gram model finds
        the text than its words' frequencies alone would; frequent words in no order (a stop-word salad) are
        likely, but not more so than their frequencies say."""
        out = []
        for i, (prompt, cont) in enumerate(zip(prompts, continuations, strict=True)):
            models = [self.models[f] for f in self.folds_for(sources[i] if sources else None)]
            context = [BOS] * (self.order - 1) + self.tokens(prompt)
            scored = self.tokens(cont)
            if not scored:
                out.append((float("inf"), float("inf")))
                continue
            total = unigram = 0.0
            for tok in scored:
                ctx = context[len(context) - (self.order - 1) :]
                # The folds as an equal mixture: the probability of the token, not of its log.
                p = sum(m.score(tok, ctx) for m in models) / len(models)
                u = sum(m.score(tok) for m in models) / len(models)
                total -= math.log(max(p, self.floor))
                unigram -= math.log(max(u, self.floor))
                context.append(tok)
            out.append((total / len(scored), unigram / len(scored)))
        return out


def build_ngram(docs: Sequence[tuple[int, str]], *, order: int, vocab_size: int, folds: int) -> NgramReference:
    """Fit the reference on ``(document id, text)`` pairs; the fingerprint is left to the caller."""
    from nltk.lm import Vocabulary, WittenBellInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [(doc_id, text) for doc_id, text in docs if text.strip()]
    if not texts:
        raise ConfigError(
            "judge.reference = 'ngram' needs text or chat documents in orig/ to learn from; add some, or set "
            "judge.reference to 'hf' or 'endpoint'"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator((t for _, t in texts), trainer=trainer)
    by_fold: list[list[list[str]]] = [[] for _ in range(folds)]
    n_tokens = 0
    for doc_id, text in texts:
        pieces = tok.encode(text).tokens
        n_tokens += len(pieces)
        by_fold[doc_id % folds].append(pieces)
    fitted = []
    for fold_docs in by_fold:
        lm = WittenBellInterpolated(order, vocabulary=Vocabulary(unk_cutoff=1))
        train, vocab = padded_everygram_pipeline(order, fold_docs)
        lm.fit(train, vocab)
        fitted.append(lm)
    return NgramReference(tok, fitted, order, "", 1.0 / (n_tokens + 1), len(texts), n_tokens)


def _ngram_inputs(cfg: JudgeConfig, store: Store) -> tuple[list[tuple[int, str]], str]:
    rows = [r for r in reference_documents(store) if r["format"] != "py"]  # code is judged by running it
    h = hashlib.sha256(
        f"{NGRAM_SCHEME} order={cfg.reference_order} vocab={cfg.reference_vocab} folds={cfg.reference_folds}".encode()
    )
    for r in rows:
        h.update(f"\n{r['id']}:{r['hash']}".encode())
    return [(r["id"], document_text(r["kind"], r["content"])) for r in rows], h.hexdigest()[:16]


def _read_pickle(path: Path, kind: type) -> Any:
    """Our own cache file from our own state dir, or None when it is missing, unreadable or of another kind."""
    if not path.exists():
        return None
    try:
        with path.open("rb") as f:
            obj = pickle.load(f)
        return obj if isinstance(obj, kind) else None
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
        log.warning("judge cache %s unreadable (%s); rebuilding it", path, e)
        return None


def _write_pickle(path: Path, obj: Any, *, keep: str) -> None:
    """Write atomically, then drop the older files of the same pattern ``keep``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in path.parent.glob(keep):
        if old != path:
            old.unlink(missing_ok=True)


def load_ngram(cfg: JudgeConfig, paths: ProjectPaths, store: Store) -> NgramReference:
    """The n-gram reference of the current orig/ documents: from the state dir's cache, else built and cached."""
    docs, fingerprint = _ngram_inputs(cfg, store)
    path = paths.state / CACHE_DIR / f"reference-{fingerprint}.pkl"
    ref = _read_pickle(path, NgramReference)
    if ref is not None and ref.fingerprint == fingerprint:
        return ref
    ref = build_ngram(docs, order=cfg.reference_order, vocab_size=cfg.reference_vocab, folds=cfg.reference_folds)
    ref.fingerprint = fingerprint
    _write_pickle(path, ref, keep="reference-*.pkl")
    log.info(
        "judge reference: %d-gram over %d orig documents (%d tokens), %s", ref.order, ref.n_docs, ref.n_tokens, path
    )
    return ref


# --------------------------------------------------------------------------- a frozen model


class ScoreMemo:
    """What a frozen reference already computed, by (prompt, continuation), oldest dropped first: the same original A
    is scored once for every rewrite of it, and ``judge eval`` asks each judge alone and then the pipeline. A
    failed score (nan) is not kept."""

    def __init__(self, size: int = 4096):
        self.size, self.scores = size, OrderedDict[tuple[str, str], Any]()

    def get(
        self, prompts: Sequence[str], continuations: Sequence[str], compute: Callable[[list[str], list[str]], list[Any]]
    ) -> list[Any]:
        keys = list(zip(prompts, continuations, strict=True))
        todo = [k for k in dict.fromkeys(keys) if k not in self.scores]
        fresh = dict(zip(todo, compute([p for p, _ in todo], [c for _, c in todo]) if todo else [], strict=True))
        for k, v in fresh.items():
            if v == v:
                self.scores[k] = v
        while len(self.scores) > self.size:
            self.scores.popitem(last=False)
        return [fresh[k] if k in fresh else self.scores[k] for k in keys]


@dataclass(frozen=True)
class Unigram:
    """How often each token of the reference's vocabulary occurs in orig/: the word-frequency half of SLOR."""

    counts: dict[int, int]
    total: int
    vocab: int
    k: float = 0.1  # add-k smoothing: a token orig/ never has is rare, not impossible

    def nll(self, token: int) -> float:
        return -math.log((self.counts.get(token, 0) + self.k) / (self.total + self.k * self.vocab))


def counted_tokens(ids: Sequence[int], blank: frozenset[int], n: int = 4) -> list[bool]:
    """Which of a continuation's tokens a model reference's fluency counts: not a token of whitespace alone (layout is
    for the document rules to judge), and not one that ends an ``n``-gram already seen in it (a model predicts a
    repeat from its context almost free: a duplicated half would read as the most fluent text; repetition is for the
    rules too)."""
    seen: set[tuple[int, ...]] = set()
    out = []
    for i, tok in enumerate(ids):
        gram = tuple(ids[max(0, i - n + 1) : i + 1])
        out.append(tok not in blank and not (len(gram) == n and gram in seen))
        seen.add(gram)
    return out


class ModelReference:
    """A loaded causal LM used as the reference; it must not be the model being judged (the caller sees to it).

    ``perplexity`` is its mean NLL over every token of the continuation; ``fluency`` (SLOR) needs ``unigram``, token
    frequencies of orig/, and counts only the tokens of `counted_tokens`."""

    name = "model"

    def __init__(self, model: Any, tokenizer: Any, unigram: Unigram | None = None):
        self.model, self.tokenizer, self.unigram = model, tokenizer, unigram
        self.memo = ScoreMemo()
        self.blank = frozenset(
            i for t, i in tokenizer.get_vocab().items() if not tokenizer.convert_tokens_to_string([t]).strip()
        )

    def tokens(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[tuple[list[int], list[float]]]:
        from selfloop.model.score import token_nll

        return self.memo.get(prompts, continuations, lambda p, c: token_nll(self.model, self.tokenizer, p, c))

    def nll(
        self, prompts: Sequence[str], continuations: Sequence[str], sources: Sequence[Sequence[int]] | None = None
    ) -> list[float]:
        from selfloop.model.score import mean_nll

        return mean_nll(self.tokens(prompts, continuations))

    def scores(
        self, prompts: Sequence[str], continuations: Sequence[str], sources: Sequence[Sequence[int]] | None = None
    ) -> list[tuple[float, float]]:
        """(mean NLL, mean unigram NLL) over the counted tokens of each continuation; (inf, inf) when none is."""
        if self.unigram is None:
            raise ConfigError("this model reference has no unigram of orig/ for fluency; use 'perplexity'")
        out = []
        for ids, nll in self.tokens(prompts, continuations):
            kept = [(t, x) for t, x, keep in zip(ids, nll, counted_tokens(ids, self.blank), strict=True) if keep]
            if not kept:
                out.append((float("inf"), float("inf")))
                continue
            out.append((sum(x for _, x in kept) / len(kept), sum(self.unigram.nll(t) for t, _ in kept) / len(kept)))
        return out


def has_fluency(ref: Reference) -> bool:
    """Whether ``ref`` knows word frequencies as well as likelihoods (the ``fluency`` scorer needs both)."""
    return hasattr(ref, "scores") and getattr(ref, "unigram", True) is not None


# The first this many characters of orig/ (by document id) give the unigram: plenty for word frequencies.
UNIGRAM_CHARS = 20_000_000


def load_unigram(tokenizer: Any, paths: ProjectPaths, store: Store) -> Unigram:
    """Token counts of orig/'s train-split text and chat under ``tokenizer``, cached in the state dir under a
    fingerprint of the vocabulary and the documents."""
    rows = [r for r in reference_documents(store) if r["format"] != "py"]
    vocab = tokenizer.get_vocab()
    h = hashlib.sha256(f"unigram {UNIGRAM_CHARS} {json.dumps(sorted(vocab.items()))}".encode())
    for r in rows:
        h.update(f"\n{r['id']}:{r['hash']}".encode())
    path = paths.state / CACHE_DIR / f"unigram-{h.hexdigest()[:16]}.pkl"
    cached = _read_pickle(path, Unigram)
    if cached is not None:
        return cached
    counts: Counter[int] = Counter()
    chars = 0
    for r in rows:
        text = document_text(r["kind"], r["content"])
        counts.update(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        chars += len(text)
        if chars >= UNIGRAM_CHARS:
            break
    unigram = Unigram(dict(counts), counts.total(), len(vocab))
    _write_pickle(path, unigram, keep="unigram-*.pkl")
    return unigram


def load_hf(cfg: JudgeConfig, paths: ProjectPaths, store: Store | None = None) -> ModelReference:
    """The frozen model ``judge.reference_path`` names, in any form ``model.base`` takes: a local model dir, a model
    id already in the Hugging Face cache, or a GGUF file (converted once into the state dir's ``base/``). With
    ``store``, the token frequencies of orig/ that its fluency needs."""
    if not cfg.reference_path or cfg.reference_path == "scratch":
        raise ConfigError(
            "judge.reference = 'hf' needs judge.reference_path: a local Hugging Face model dir, a cached model id "
            "or a .gguf file"
        )
    given = Path(cfg.reference_path).expanduser()
    if (given if given.is_absolute() else paths.root / given).resolve().is_relative_to(paths.state.resolve()):
        raise ConfigError(
            f"judge.reference_path = {cfg.reference_path!r} lies in the state dir, where the generations being "
            "judged live: a judge is never the author; point it at a frozen model outside it"
        )
    from selfloop.model.base import resolve_base
    from selfloop.model.factory import load_pretrained

    try:
        path = resolve_base(cfg.reference_path, paths.root, paths.state, log=log.info, key="judge.reference_path")
    except SelfloopError as e:
        raise ConfigError(str(e)) from None
    assert path is not None  # "scratch" was refused above
    model, tokenizer = load_pretrained(path)
    model.eval()
    unigram = load_unigram(tokenizer, paths, store) if store is not None else None
    return ModelReference(model, tokenizer, unigram)


# --------------------------------------------------------------------------- an endpoint


class EndpointReference:
    """Log-probabilities from an OpenAI-compatible ``/v1/completions`` on localhost (vLLM, llama.cpp's server, ...):
    the prompt plus continuation sent with ``echo`` and ``max_tokens = 0``; the tokens from the continuation's
    first character on are scored."""

    name = "endpoint"

    def __init__(self, url: str, model: str = "reference", timeout: float = 60.0):
        check_local_url(url, "judge.reference_url")
        self.url, self.model, self.timeout = url.rstrip("/"), model, timeout
        self.memo = ScoreMemo()

    def nll(
        self, prompts: Sequence[str], continuations: Sequence[str], sources: Sequence[Sequence[int]] | None = None
    ) -> list[float]:
        return self.memo.get(prompts, continuations, lambda ps, cs: [self._one(p, c) for p, c in zip(ps, cs)])

    def _one(self, prompt: str, cont: str) -> float:
        if not cont:
            return float("inf")
        body = {"model": self.model, "prompt": prompt + cont, "max_tokens": 0, "echo": True, "logprobs": 0}
        req = urllib.request.Request(
            self.url + "/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                lp = json.loads(resp.read())["choices"][0]["logprobs"]
            pairs = zip(lp["token_logprobs"], lp["text_offset"], strict=True)
            scored = [float(x) for x, off in pairs if x is not None and off >= len(prompt)]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
            log.warning("judge reference endpoint %s: %s", self.url, e)
            return float("nan")
        return -sum(scored) / len(scored) if scored else float("nan")


def check_local_url(url: str, key: str = "judge.external_url") -> None:
    """A judge's model server is local: refuse anything off this machine."""
    host = urlparse(url).hostname or ""
    if not url or not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise ConfigError(f"{key} = {url!r}: must be an OpenAI-compatible endpoint on localhost")


def load_reference(cfg: JudgeConfig, paths: ProjectPaths, store: Store) -> Reference:
    """The reference ``judge.reference`` names, ready to score."""
    if cfg.reference == "ngram":
        return load_ngram(cfg, paths, store)
    if cfg.reference == "hf":
        return load_hf(cfg, paths, store)
    return EndpointReference(cfg.reference_url)


def text_resources(cfg: JudgeConfig, paths: ProjectPaths, store: Store, kinds: Sequence[str]) -> dict[str, Any]:
    """What the text and chat judges of ``kinds`` need from the project: the A-vs-B reference and the document
    rules' calibration on orig/ (both cached in the state dir)."""
    from selfloop.judge.doc_rules import load_calibration

    names = {n for k in kinds if k in ("text", "chat") for n in getattr(cfg, k)}
    out: dict[str, Any] = {}
    if "a_vs_b" in names:
        out["reference"] = load_reference(cfg, paths, store)
    if names & {"a_vs_b", "doc_quality"}:
        out["doc_calibration"] = load_calibration(cfg, paths, store)
    return out
