"""Document-quality rules from the field, from datatrove's filters, one check per rule, each with its reason.

The Gopher (Rae et al. 2021), C4 (Raffel et al. 2020) and FineWeb (Penedo et al. 2024) heuristics as datatrove
implements them; a rule is one datatrove filter with every check but its own switched off, so a text that fails
says which rule and which of datatrove's reasons. ingest already has the cheap ones that apply to every document
(length, symbol ratio, Gopher's repeated lines and top 3-gram: ``selfloop.corpus.filters``); these are the ones
that tell prose from gibberish, applied to the model's text and calibrated on the user's own: a rule that would
drop more than ``judge.doc_rules_max_orig_drop`` of the orig/ documents of a kind is not applied to that kind
(``selfloop status`` says which), rather than silently gutting rework.

Words are split at whitespace, as the Gopher paper counts them, not by spaCy, which datatrove uses for English and
which is too heavy for the daemon; sentences by datatrove's own fallback splitter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from selfloop.config import DOC_RULES, JudgeConfig, ProjectPaths
from selfloop.store import Store
from selfloop.store.corpus import reference_documents

log = logging.getLogger(__name__)

CALIBRATION_SCHEME = "datatrove-0.10-2"
KINDS = ("text", "chat")

_GOPHER_OFF: dict[str, Any] = dict(
    min_doc_words=None,
    max_doc_words=None,
    min_avg_word_length=None,
    max_avg_word_length=None,
    max_symbol_word_ratio=None,
    max_bullet_lines_ratio=None,
    max_ellipsis_lines_ratio=None,
    max_non_alpha_words_ratio=None,
    min_stop_words=None,
)
# FineWeb's checks have thresholds, not switches: these can never fire.
_FINEWEB_OFF: dict[str, Any] = dict(
    line_punct_thr=0.0, short_line_thr=1.0, char_duplicates_ratio=1.0, new_line_ratio=float("inf")
)
_C4_OFF: dict[str, Any] = dict(
    filter_no_terminal_punct=False,
    min_num_sentences=-1,
    min_words_per_line=-1,
    filter_lorem_ipsum=False,
    filter_javascript=False,
    filter_curly_bracket=False,
    filter_policy=False,
)

# Gopher's rules are defined for documents of 50 words or more (its min_doc_words): below that, its count of stop
# words and its share of characters in the most frequent n-gram (even one that occurs once) say nothing.
GOPHER_MIN_WORDS = 50
# Rules that apply only to texts of at least this many words.
MIN_WORDS: dict[str, int] = {"gopher_stop_words": GOPHER_MIN_WORDS, "gopher_top_ngrams": GOPHER_MIN_WORDS}

# rule -> (datatrove filter class name, the arguments that switch its own check on, what it says in words)
SPECS: dict[str, tuple[str, dict[str, Any], str]] = {
    "gopher_stop_words": (
        "GopherQualityFilter",
        {"min_stop_words": 2},
        f"at least 2 of Gopher's stop words in {GOPHER_MIN_WORDS} words",
    ),
    "gopher_alpha_words": (
        "GopherQualityFilter",
        {"max_non_alpha_words_ratio": 0.8},
        "80% of words hold a letter",
    ),
    "gopher_word_length": (
        "GopherQualityFilter",
        {"min_avg_word_length": 3, "max_avg_word_length": 10},
        "mean word length 3 to 10",
    ),
    "gopher_symbols": ("GopherQualityFilter", {"max_symbol_word_ratio": 0.1}, "'#' and '...' under 10% of words"),
    "gopher_lines": (
        "GopherQualityFilter",
        {"max_bullet_lines_ratio": 0.9, "max_ellipsis_lines_ratio": 0.3},
        "not all bullets, not 30% of lines ending in '...'",
    ),
    "gopher_repetition": (
        "GopherRepetitionFilter",
        {"top_n_grams": ()},
        "repeated lines, paragraphs and 5- to 10-grams under Gopher's limits",
    ),
    "gopher_top_ngrams": (
        "GopherRepetitionFilter",
        {
            "dup_line_frac": None,
            "dup_para_frac": None,
            "dup_line_char_frac": None,
            "dup_para_char_frac": None,
            "dup_n_grams": (),
        },
        f"the most frequent 2- to 4-gram under Gopher's share of characters (from {GOPHER_MIN_WORDS} words)",
    ),
    "c4_sentences": (
        "C4QualityFilter",
        {"filter_no_terminal_punct": True, "min_words_per_line": 3, "min_num_sentences": 1},
        "a line of 3 or more words ending in terminal punctuation",
    ),
    "fineweb_line_punct": ("FineWebQualityFilter", {"line_punct_thr": 0.12}, "12% of lines end in punctuation"),
    "fineweb_newlines": ("FineWebQualityFilter", {"new_line_ratio": 0.3}, "newlines under 0.3 per word"),
    "fineweb_short_lines": (
        "FineWebQualityFilter",
        {"short_line_thr": 0.67, "short_line_length": 30},
        "under 67% of lines 30 characters or shorter",
    ),
}
_OFF = {"GopherQualityFilter": _GOPHER_OFF, "FineWebQualityFilter": _FINEWEB_OFF, "C4QualityFilter": _C4_OFF}
assert set(SPECS) == set(DOC_RULES), "selfloop.config.DocRule and doc_rules.SPECS name the same rules"


@cache
def _tokenizer() -> Any:
    from datatrove.utils.word_tokenizers import WhitespaceTokenizer

    class SpaceWordTokenizer(WhitespaceTokenizer):
        """datatrove's fallback sentence splitter, with words split at whitespace as Gopher defines them (a word
        keeps its punctuation) instead of by spaCy, whose punctuation tokens would count as words without letters."""

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

    return SpaceWordTokenizer()


@cache
def rule(name: str) -> Callable[[str], str | None]:
    """The check of one rule: text -> None (keep) or datatrove's reason for dropping it."""
    from datatrove.data import Document
    from datatrove.pipeline import filters

    cls_name, on, _ = SPECS[name]
    cls = getattr(filters, cls_name)
    instance = cls(**{**_OFF.get(cls_name, {}), **on, "language": _tokenizer()})

    min_words = MIN_WORDS.get(name, 0)

    def check(text: str) -> str | None:
        n = len(_tokenizer().word_tokenize(text))
        if not n:
            return "no_words"  # datatrove divides by the number of words
        if n < min_words:
            return None
        verdict = instance.filter(Document(text=text, id="candidate"))
        if verdict is True:
            return None
        return verdict[1] if isinstance(verdict, tuple) else "dropped"

    return check


def first_failure(text: str, rules: Iterable[str]) -> tuple[str, str] | None:
    """(rule, datatrove's reason) of the first rule that drops ``text``, or None when every rule keeps it."""
    for name in rules:
        why = rule(name)(text)
        if why is not None:
            return name, why
    return None


def describe(name: str) -> str:
    return SPECS[name][2]


# --------------------------------------------------------------------------- calibration on orig/


@dataclass
class Calibration:
    """Per kind, the share of orig/ documents each rule would drop, and the rules that stay on."""

    fingerprint: str
    max_drop: float
    documents: dict[str, int] = field(default_factory=dict)  # kind -> orig documents measured
    drop_share: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> rule -> share

    def active(self, kind: str, rules: Sequence[str]) -> list[str]:
        """The configured rules applied to ``kind``: those that keep enough of orig/ (all when orig/ has none)."""
        shares = self.drop_share.get(kind, {})
        return [r for r in rules if shares.get(r, 0.0) <= self.max_drop]

    def too_strict(self) -> list[tuple[str, str, float]]:
        """(kind, rule, share of orig/ dropped) for every rule left off, for ``selfloop status``."""
        return [
            (kind, r, share)
            for kind, shares in sorted(self.drop_share.items())
            for r, share in shares.items()
            if share > self.max_drop
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "max_drop": self.max_drop,
            "documents": self.documents,
            "drop_share": self.drop_share,
        }


def calibrate(texts: dict[str, list[str]], rules: Sequence[str], max_drop: float, fingerprint: str = "") -> Calibration:
    """Measure each rule on the documents of each kind."""
    cal = Calibration(fingerprint, max_drop)
    for kind, docs in texts.items():
        docs = [d for d in docs if d.strip()]
        if not docs:
            continue
        cal.documents[kind] = len(docs)
        cal.drop_share[kind] = {r: round(sum(rule(r)(d) is not None for d in docs) / len(docs), 4) for r in rules}
    return cal


def visible(kind: str, content: str) -> str:
    """What the rules read of a stored document: a chat record's assistant turns, else the text."""
    if kind != "chat":
        return content
    try:
        return "\n".join(m["content"] for m in json.loads(content)["messages"] if m.get("role") == "assistant")
    except (ValueError, KeyError, TypeError):
        return ""


def load_calibration(cfg: JudgeConfig, paths: ProjectPaths, store: Store) -> Calibration:
    """The calibration of the configured rules on the current orig/ documents: cached in the state dir by a
    fingerprint of the documents and the rules, measured again when either changes."""
    rows = [r for r in reference_documents(store) if r["format"] != "py"]
    h = hashlib.sha256(f"{CALIBRATION_SCHEME} {sorted(cfg.doc_rules)}".encode())
    for r in rows:
        h.update(f"\n{r['id']}:{r['hash']}".encode())
    fingerprint = h.hexdigest()[:16]
    folder = paths.state / "judge"
    path = folder / f"calibration-{fingerprint}.json"
    try:
        data = json.loads(path.read_text())
        return Calibration(fingerprint, cfg.doc_rules_max_orig_drop, data["documents"], data["drop_share"])
    except (OSError, ValueError, KeyError):
        pass
    texts: dict[str, list[str]] = {k: [] for k in KINDS}
    for r in rows:
        texts[r["kind"]].append(visible(r["kind"], r["content"]))
    cal = calibrate(texts, cfg.doc_rules, cfg.doc_rules_max_orig_drop, fingerprint)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(cal.as_dict(), indent=1, sort_keys=True))
    os.replace(tmp, path)
    for old in folder.glob("calibration-*.json"):
        if old != path:
            old.unlink(missing_ok=True)
    return cal
