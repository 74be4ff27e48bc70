"""Judges for model-written text: quality, novelty, and A versus B.

``text_quality`` holds generated text to the ingest filters and dedups it against the corpus and within the batch;
``a_vs_b`` accepts a rewrite B over its original A only if B wins every scorer in ``judge.ab_scorers``, and never
an empty completion or one holding U+FFFD. Judges never write to the store: the caller stores the (chosen,
rejected) pairs from the verdicts.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from selfloop.config import IngestConfig
from selfloop.corpus.normalize import normalize
from selfloop.corpus.pipeline import quality_check
from selfloop.errors import ConfigError
from selfloop.judge.base import Candidate, Judge, JudgeContext, JudgeVerdict, accept, reject
from selfloop.model.score import continuation_nll

SCORERS = ("perplexity", "quality", "external")


def visible_text(candidate: Candidate) -> str:
    """The text a quality filter should see: assistant turns of a chat, else the content."""
    if candidate.kind == "chat":
        try:
            messages = json.loads(candidate.content)["messages"]
            return "\n".join(m["content"] for m in messages if m.get("role") == "assistant")
        except (ValueError, KeyError, TypeError):
            return ""
    return candidate.content


class TextQualityJudge(Judge):
    """``text_quality``: the ingest filters applied to generated text (so rework is held to
    the same bar as user data), exact and near dedup against the corpus
    (``resources["corpus"]``: anything with ``is_duplicate(content, kind)``, the
    ``Ingestor``), and exact dedup within the batch being judged.
    """

    name = "text_quality"

    def __init__(self, context: JudgeContext):
        super().__init__(context)
        self.ingest: IngestConfig = context.resources.get("ingest_config") or IngestConfig()

    def judge(self, candidate: Candidate) -> JudgeVerdict:
        return self.judge_batch([candidate])[0]

    def judge_batch(self, candidates: Sequence[Candidate]) -> list[JudgeVerdict]:
        corpus = self.context.resources.get("corpus")
        seen: dict[str, int] = {}
        out = []
        for i, c in enumerate(candidates):
            text = visible_text(c)
            if c.kind == "chat" and not text.strip():
                out.append(reject(self.name, "malformed_chat: no assistant turn"))
                continue
            ok, reason = quality_check(text, self.ingest)
            if not ok:
                out.append(reject(self.name, reason or "quality"))
                continue
            key = normalize(c.content)
            if key in seen:
                out.append(reject(self.name, f"batch_duplicate: same as candidate {seen[key]} of this batch"))
                continue
            seen[key] = i
            dup = corpus.is_duplicate(c.content, c.kind if c.kind in ("text", "chat") else "text") if corpus else None
            if dup:
                out.append(reject(self.name, dup))
                continue
            out.append(accept(self.name, "passes the ingest filters and is new"))
        return out


class ABJudge(Judge):
    """``a_vs_b``: compares a rewrite B with its original A, both as continuations of the
    same prompt (``metadata["prompt"]``; B is ``metadata["completion"]``, A is
    ``candidate.source``), by the scorers named in ``judge.ab_scorers``:

    - ``perplexity``: mean NLL per token under the reference model
      (``resources["model"]``/``["tokenizer"]``, the champion). B must beat A by
      more than ``judge.ab_min_margin`` (relative).
    - ``quality``: B must pass the ingest filters whenever A does.
    - ``external``: a judge model behind an OpenAI-compatible endpoint on localhost
      (``judge.external_url``) is asked which continuation is better.

    B is accepted only if it wins every scorer, and never when it is empty or holds
    U+FFFD (an invalid byte sequence the model emitted). A candidate without an
    original (synthesis) has nothing to beat: its reference NLL is recorded as its
    score, and only those two rules apply.
    """

    name = "a_vs_b"

    def __init__(self, context: JudgeContext):
        super().__init__(context)
        unknown = [s for s in context.config.ab_scorers if s not in SCORERS]
        if unknown:
            raise ConfigError(f"judge.ab_scorers: unknown scorer(s) {unknown}; known: {', '.join(SCORERS)}")
        if "external" in context.config.ab_scorers:
            check_local_url(context.config.external_url)
        self.ingest: IngestConfig = context.resources.get("ingest_config") or IngestConfig()

    def judge(self, candidate: Candidate) -> JudgeVerdict:
        return self.judge_batch([candidate])[0]

    def judge_batch(self, candidates: Sequence[Candidate]) -> list[JudgeVerdict]:
        scorers = self.context.config.ab_scorers
        prompts = [str(c.metadata.get("prompt", "")) for c in candidates]
        b_texts = [str(c.metadata.get("completion", c.content)) for c in candidates]
        nll_b = nll_a = None
        if "perplexity" in scorers or any(c.source is None for c in candidates):
            model, tok = self._model()
            nll_b = continuation_nll(model, tok, prompts, b_texts)
            paired = [i for i, c in enumerate(candidates) if c.source is not None]
            a_scores = continuation_nll(
                model, tok, [prompts[i] for i in paired], [candidates[i].source for i in paired]
            )
            nll_a = dict(zip(paired, a_scores))
        out = []
        for i, c in enumerate(candidates):
            unusable = unusable_completion(b_texts[i])
            if c.source is None:
                if unusable:
                    out.append(reject(self.name, unusable, score=_finite(nll_b[i]), nll_b=_finite(nll_b[i])))
                else:
                    out.append(
                        accept(
                            self.name,
                            "no original to compare; reference NLL recorded",
                            score=_finite(nll_b[i]),
                            nll_b=_finite(nll_b[i]),
                        )
                    )
                continue
            detail: dict[str, Any] = {}
            failure = None
            if "perplexity" in scorers:
                a, b = nll_a[i], nll_b[i]
                detail.update(nll_a=_finite(a), nll_b=_finite(b))
                gain = (a - b) / a if a > 0 and a != float("inf") else 0.0
                detail["gain"] = round(gain, 6)
                if not gain > self.context.config.ab_min_margin:
                    failure = f"lost_a_vs_b: perplexity, B {b:.3f} vs A {a:.3f} nats/token"
            if failure is None and "quality" in scorers:
                a_ok, _ = quality_check(prompts[i] + c.source, self.ingest)
                b_ok, why = quality_check(prompts[i] + b_texts[i], self.ingest)
                detail.update(quality_a=a_ok, quality_b=b_ok)
                if a_ok and not b_ok:
                    failure = f"lost_a_vs_b: quality, B fails {why} where A passes"
            if failure is None and "external" in scorers:
                winner = ask_external(self.context.config.external_url, prompts[i], c.source, b_texts[i])
                detail["external"] = winner
                if winner != "B":
                    failure = f"lost_a_vs_b: external judge preferred {winner}"
            failure = failure or unusable
            score = detail.get("gain")
            out.append(
                reject(self.name, failure, score=score, **detail)
                if failure
                else accept(self.name, "B beats A", score=score, **detail)
            )
        return out

    def _model(self) -> tuple[Any, Any]:
        model, tok = self.context.resources.get("model"), self.context.resources.get("tokenizer")
        if model is None or tok is None:
            raise ConfigError("judge 'a_vs_b' needs the reference model: resources['model'] and ['tokenizer']")
        return model, tok


def unusable_completion(text: str) -> str | None:
    """Why the model's own text can never win, whatever it is compared with (or None).

    Without an original, a synthesis would otherwise be accepted as its seed text
    alone; and a byte-level model that emits an invalid byte sequence decodes to
    U+FFFD, which training would teach as broken bytes.
    """
    if not text.strip():
        return "empty_completion: the model wrote nothing"
    if "\ufffd" in text:
        return f"invalid_unicode: {text.count(chr(0xFFFD))} U+FFFD replacement character(s) in the model's text"
    return None


def _finite(x: float) -> float | None:
    return None if x != x or x in (float("inf"), float("-inf")) else round(x, 6)


# --------------------------------------------------------------------------- external judge


def check_local_url(url: str) -> None:
    """The external judge is a local model server: refuse anything off this machine."""
    host = urlparse(url).hostname or ""
    if not url or not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise ConfigError(f"judge.external_url = {url!r}: must be an OpenAI-compatible endpoint on localhost")


def ask_external(url: str, prompt: str, a: str, b: str, timeout: float = 60.0) -> str:
    """Ask an OpenAI-compatible chat endpoint which continuation is better: "A", "B" or "?"."""
    question = (
        "Two continuations of the same text follow. Answer with the single letter of the better one.\n\n"
        f"Text: {prompt}\n\nA: {a}\n\nB: {b}\n\nBetter:"
    )
    body = json.dumps(
        {"model": "judge", "messages": [{"role": "user", "content": question}], "max_tokens": 1, "temperature": 0}
    ).encode()
    req = urllib.request.Request(
        url.rstrip("/") + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read())["choices"][0]["message"]["content"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError):
        return "?"
    answer = str(answer).strip().upper()[:1]
    return answer if answer in ("A", "B") else "?"
