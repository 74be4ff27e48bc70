"""Judges for model-written text: quality, novelty, and A versus B.

``text_quality`` holds generated text to the ingest filters and dedups it against the corpus and within the batch;
``doc_quality`` to the Gopher / C4 / FineWeb rules calibrated on orig/ (``selfloop.judge.doc_rules``);
``a_vs_b`` accepts a rewrite B over its original A only if B wins every scorer in ``judge.ab_scorers``, and never
an empty completion or one holding U+FFFD. Its perplexity comes from a reference that is never the model being
judged (``selfloop.judge.reference``). Judges never write to the store: the caller stores the (chosen, rejected)
pairs from the verdicts.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from selfloop.config import IngestConfig
from selfloop.corpus.normalize import normalize
from selfloop.corpus.pipeline import quality_check
from selfloop.errors import ConfigError
from selfloop.judge import doc_rules
from selfloop.judge.base import Candidate, Judge, JudgeContext, JudgeVerdict, accept, reject
from selfloop.judge.reference import Reference, check_local_url, has_fluency

SCORERS = ("perplexity", "fluency", "quality", "faithful", "external")


def scorers_need_reference(scorers: Sequence[str]) -> bool:
    return "perplexity" in scorers or "fluency" in scorers


def _unzip(pairs: Sequence[tuple[float, float]], n: int) -> tuple[list[float], list[float]]:
    return ([p[0] for p in pairs], [p[1] for p in pairs]) if n else ([], [])


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


class DocQualityJudge(Judge):
    """``doc_quality``: the Gopher / C4 / FineWeb rules of ``judge.doc_rules`` on the candidate's visible text,
    less those that the calibration on orig/ (``resources["doc_calibration"]``, a
    `selfloop.judge.doc_rules.Calibration`) found too strict for its kind. Without a calibration every configured
    rule applies."""

    name = "doc_quality"
    independent = True

    def rules(self, kind: str) -> list[str]:
        cal = self.context.resources.get("doc_calibration")
        rules = list(self.context.config.doc_rules)
        return cal.active(kind, rules) if cal is not None else rules

    def judge(self, candidate: Candidate) -> JudgeVerdict:
        rules = self.rules(candidate.kind)
        failed = doc_rules.first_failure(visible_text(candidate), rules)
        if failed is None:
            return accept(self.name, f"passes {len(rules)} document rules", rules=len(rules))
        name, why = failed
        return reject(self.name, f"{name}: {why} (wants {doc_rules.describe(name)})", rule=name)


class ABJudge(Judge):
    """``a_vs_b``: compares a rewrite B with its original A, both as continuations of the
    same prompt (``metadata["prompt"]``; B is ``metadata["completion"]``, A is
    ``candidate.source``), by the scorers named in ``judge.ab_scorers``:

    - ``perplexity``: mean NLL per token under the reference (``resources["reference"]``, a
      `selfloop.judge.reference.Reference` built from ``judge.reference``), never the model being judged.
      B must beat A by more than ``judge.ab_min_margin`` (relative).
    - ``fluency``: B's mean log-odds per token under the reference over the unigram (SLOR) must beat A's by more
      than ``judge.ab_fluency_margin``, or, where B passes quality rules that A fails, fall short by less than
      ``judge.ab_fluency_tie``.
    - ``quality``: B must pass the ingest filters and the document rules whenever A does.
    - ``faithful``: B must keep what A says: its chrF against A (`faithfulness`) at least
      ``judge.ab_min_faithful``, and at least ``judge.ab_min_word_recall`` of A's words (`word_recall`); the
      scorers above ask which text reads better, not whether it still says the same.
    - ``external``: a judge model behind an OpenAI-compatible endpoint on localhost
      (``judge.external_url``) is asked which continuation is better.

    B is accepted only if it wins every scorer, and never when it is empty or holds
    U+FFFD (an invalid byte sequence the model emitted). A candidate without an
    original (synthesis) has nothing to beat: its reference NLL is recorded as its
    score, and only those two rules apply.
    """

    name = "a_vs_b"
    independent = True

    def __init__(self, context: JudgeContext):
        super().__init__(context)
        unknown = [s for s in context.config.ab_scorers if s not in SCORERS]
        if unknown:
            raise ConfigError(f"judge.ab_scorers: unknown scorer(s) {unknown}; known: {', '.join(SCORERS)}")
        if "external" in context.config.ab_scorers:
            check_local_url(context.config.external_url)
        ref = context.resources.get("reference")
        if "fluency" in context.config.ab_scorers and ref is not None and not has_fluency(ref):
            raise ConfigError(
                "judge.ab_scorers 'fluency' needs a reference with word frequencies: judge.reference = 'ngram' or "
                "'hf' (or use 'perplexity' with the endpoint reference)"
            )
        self.ingest: IngestConfig = context.resources.get("ingest_config") or IngestConfig()
        self.doc = DocQualityJudge(context)

    def judge(self, candidate: Candidate) -> JudgeVerdict:
        return self.judge_batch([candidate])[0]

    def quality(self, kind: str, text: str) -> tuple[bool, str | None]:
        """Whether ``text`` passes the ingest filters and the document rules, and if not, why."""
        ok, why = quality_check(text, self.ingest)
        if not ok:
            return ok, why
        failed = doc_rules.first_failure(text, self.doc.rules(kind))
        return (True, None) if failed is None else (False, f"{failed[0]}: {failed[1]}")

    def judge_batch(self, candidates: Sequence[Candidate]) -> list[JudgeVerdict]:
        scorers = self.context.config.ab_scorers
        prompts = [str(c.metadata.get("prompt", "")) for c in candidates]
        b_texts = [str(c.metadata.get("completion", c.content)) for c in candidates]
        nll_b: list[float] = []
        uni_b: list[float] = []
        nll_a: dict[int, float] = {}
        uni_a: dict[int, float] = {}
        if scorers_need_reference(scorers) or any(c.source is None for c in candidates):
            sources = [list(c.metadata.get("source_ids") or ()) for c in candidates]
            paired = [i for i, c in enumerate(candidates) if c.source is not None]
            a_args = (
                [prompts[i] for i in paired],
                [candidates[i].source for i in paired],
                [sources[i] for i in paired],
            )
            ref = self.reference()
            if "fluency" in scorers:
                nll_b, uni_b = _unzip(ref.scores(prompts, b_texts, sources), len(candidates))
                a_nll, a_uni = _unzip(ref.scores(*a_args), len(paired))
                nll_a, uni_a = dict(zip(paired, a_nll)), dict(zip(paired, a_uni))
            else:
                nll_b = ref.nll(prompts, b_texts, sources)
                nll_a = dict(zip(paired, ref.nll(*a_args)))
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
            if "perplexity" in scorers or "fluency" in scorers:
                a, b = nll_a[i], nll_b[i]
                detail.update(nll_a=_finite(a), nll_b=_finite(b))
                if a != a or b != b:
                    failure = f"reference_unavailable: the {self.reference().name} reference could not score A or B"
            if failure is None and "perplexity" in scorers:
                gain = (a - b) / a if a > 0 and a != float("inf") else 0.0
                detail["gain"] = _finite(gain)
                if not gain > self.context.config.ab_min_margin:
                    failure = f"lost_a_vs_b: perplexity, B {b:.3f} vs A {a:.3f} nats/token"
            if failure is None and "quality" in scorers:
                a_ok, _ = self.quality(c.kind, prompts[i] + c.source)
                b_ok, why = self.quality(c.kind, prompts[i] + b_texts[i])
                detail.update(quality_a=a_ok, quality_b=b_ok)
                if a_ok and not b_ok:
                    failure = f"lost_a_vs_b: quality, B fails {why} where A passes"
            if failure is None and "fluency" in scorers:
                fa, fb = uni_a[i] - nll_a[i], uni_b[i] - nll_b[i]
                detail.update(fluency_a=_finite(fa), fluency_b=_finite(fb), fluency_gain=_finite(fb - fa))
                # B passes the quality rules that A fails: a near tie in fluency (a duplicated half reads as
                # fluently as the whole) goes to B.
                better = "quality" in scorers and detail["quality_b"] and not detail["quality_a"]
                bar = -self.context.config.ab_fluency_tie if better else self.context.config.ab_fluency_margin
                if not fb - fa > bar:
                    failure = f"lost_a_vs_b: fluency, B {fb:.3f} vs A {fa:.3f} nats/token over the unigram"
            if failure is None and "faithful" in scorers:
                kept, bar = faithfulness(c.source, b_texts[i]), self.context.config.ab_min_faithful
                recall, dropped = word_recall(c.source, b_texts[i])
                detail.update(faithful=round(kept, 2), word_recall=round(recall, 3))
                if kept < bar:
                    failure = f"unfaithful: B keeps too little of what A says (chrF {kept:.1f} < {bar:g})"
                elif recall < self.context.config.ab_min_word_recall:
                    failure = (
                        f"unfaithful: B drops {len(dropped)} of A's words ({recall:.0%} kept < "
                        f"{self.context.config.ab_min_word_recall:.0%}), e.g. {', '.join(map(repr, dropped[:4]))}"
                    )
            if failure is None and "external" in scorers:
                winner = ask_external(self.context.config.external_url, prompts[i], c.source, b_texts[i])
                detail["external"] = winner
                if winner != "B":
                    failure = f"lost_a_vs_b: external judge preferred {winner}"
            failure = unusable or failure  # an empty or broken B loses whatever A is: the clearest reason
            score = detail.get("fluency_gain", detail.get("gain"))
            out.append(
                reject(self.name, failure, score=score, **detail)
                if failure
                else accept(self.name, "B beats A", score=score, **detail)
            )
        return out

    def reference(self) -> Reference:
        if self.context.resources.get("reference") is not None:
            return self.context.resources["reference"]
        raise ConfigError(
            "judge 'a_vs_b' needs its reference (resources['reference'], built from judge.reference); "
            "it never scores with the model being judged"
        )


def faithfulness(a: str, b: str) -> float:
    """chrF of B against A, 0..100 (sacrebleu: character 6-grams and word bigrams, lowercased, recall weighted twice):
    how much of what A says B keeps. Characters, not words, so a typo or a merged word in A costs little; a fluent
    summary or an answer about something else costs a lot."""
    from sacrebleu.metrics import CHRF

    return CHRF(word_order=2, lowercase=True).sentence_score(b, [a]).score if b.strip() and a.strip() else 0.0


_WORD = re.compile(r"[^\W\d_][\w'-]*")  # a word starts with a letter (any script); no bare numbers
_NON_WORD = re.compile(r"[\W_]+")


def word_recall(a: str, b: str, typo: float = 75.0) -> tuple[float, list[str]]:
    """The share of A's distinct words (two characters or more, lowercased) that B keeps, and those it drops in A's
    order. A word of A is kept when B has it, has it with other spacing (A's "thecat" in B's "the cat"), or has a
    word within ``typo`` of it (rapidfuzz's ratio, 0..100): a repair keeps A's words, a dropped clause does not.
    chrF misses a dropped clause: its character n-grams average it away."""
    from rapidfuzz import fuzz, process

    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(a) if len(w) > 1))
    if not words:
        return 1.0, []
    have = {w.lower() for w in _WORD.findall(b)}
    squashed = _NON_WORD.sub("", b.lower())
    dropped = [
        w
        for w in words
        if w not in have
        and _NON_WORD.sub("", w) not in squashed
        and process.extractOne(w, have, scorer=fuzz.ratio, score_cutoff=typo) is None
    ]
    return 1 - len(dropped) / len(words), dropped


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
