"""The A-vs-B reference is never the author: an n-gram model of orig/ only (cross-fitted, cached in the state dir),
a frozen model dir outside the state dir, or a localhost endpoint's log-probabilities."""

from __future__ import annotations

import math

import pytest
from fake_endpoint import fake_endpoint
from harbor_prose import HARBOR

from selfloop.config import IngestConfig, JudgeConfig, WatchConfig
from selfloop.errors import ConfigError
from selfloop.ingest.ingestor import Ingestor
from selfloop.judge.reference import (
    EndpointReference,
    NgramReference,
    ScoreMemo,
    Unigram,
    build_ngram,
    counted_tokens,
    has_fluency,
    load_hf,
    load_ngram,
    load_reference,
)
from selfloop.store import Store
from selfloop.testing import make_project, tiny_config

FIXED = "The baker opened his shutters in the early morning and set out fresh bread for the market."


def small_reference(order: int = 3) -> NgramReference:
    docs = [(i, text) for i, text in enumerate(HARBOR * 3)]
    return build_ngram(docs, order=order, vocab_size=300, folds=2)


def test_ngram_prefers_fluent_text_to_shuffled_words_and_typos():
    ref = small_reference()
    prompt = "In the early morning "
    clean = "the fishing boats rocked gently at their moorings."
    shuffled = "moorings rocked their the at gently boats fishing."
    typos = "teh fsihing boast rokced gnetly at thier moornigs."
    (clean_nll, clean_uni), (shuf_nll, shuf_uni), (typo_nll, _) = ref.scores([prompt] * 3, [clean, shuffled, typos])
    assert clean_nll < shuf_nll and clean_nll < typo_nll
    # Over the unigram (SLOR): the same words in no order are no likelier than their frequencies say.
    assert clean_uni - clean_nll > shuf_uni - shuf_nll
    assert ref.nll([prompt], [""]) == [float("inf")]


def test_cross_fitting_scores_a_source_by_the_folds_that_never_saw_it():
    docs = [(0, HARBOR[0]), (1, HARBOR[1]), (2, HARBOR[2]), (3, HARBOR[3])]
    ref = build_ngram(docs, order=3, vocab_size=300, folds=2)
    assert ref.folds_for([0]) == [1] and ref.folds_for([1, 3]) == [0]
    assert ref.folds_for([0, 1]) == [0, 1] and ref.folds_for(None) == [0, 1]
    # Document 0 is in fold 0 only: fold 0 memorized it, fold 1 never saw it.
    memorized = ref.nll([""], [HARBOR[0]], [[1]])[0]  # sources in fold 1: scored by fold 0
    unseen = ref.nll([""], [HARBOR[0]], [[0]])[0]  # its own source: scored by fold 1
    assert unseen > memorized


def test_an_empty_orig_is_a_config_error_naming_the_fix():
    with pytest.raises(ConfigError, match="judge.reference"):
        build_ngram([(1, "  ")], order=3, vocab_size=300, folds=2)


@pytest.fixture
def ingested(tmp_path):
    _, cfg, paths = make_project(tmp_path, tiny_config())
    for i, text in enumerate(HARBOR):
        (paths.orig / f"p{i}.txt").write_text(text + "\n")
    (paths.orig / "code.py").write_text("def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n")
    with Store.open(paths.db) as store:
        Ingestor(IngestConfig(), WatchConfig(), paths, store).scan()
    return cfg, paths


def test_ngram_reference_is_built_from_orig_cached_and_rebuilt_when_orig_changes(ingested):
    cfg, paths = ingested
    jc = JudgeConfig(reference_vocab=300, reference_order=3)
    with Store.open(paths.db) as store:
        ref = load_ngram(jc, paths, store)
        cached = list((paths.state / "judge").glob("reference-*.pkl"))
        assert len(cached) == 1 and ref.fingerprint in cached[0].name
        assert ref.n_docs >= 1  # held-out documents and code (format py) are left out
        again = load_reference(jc, paths, store)
        assert again.fingerprint == ref.fingerprint
        # A new orig document changes the fingerprint: a new model, the old cache file gone.
        (paths.orig / "new.txt").write_text(FIXED + " " + FIXED.lower() + "\n")
        Ingestor(IngestConfig(), WatchConfig(), paths, store).scan()
        fresh = load_ngram(jc, paths, store)
    assert fresh.fingerprint != ref.fingerprint
    assert [p.name for p in (paths.state / "judge").glob("reference-*.pkl")] == [f"reference-{fresh.fingerprint}.pkl"]


def test_rework_documents_never_reach_the_reference(ingested):
    cfg, paths = ingested
    jc = JudgeConfig(reference_vocab=300, reference_order=3)
    with Store.open(paths.db) as store:
        before = load_ngram(jc, paths, store).fingerprint
        (paths.rework / "text").mkdir(parents=True, exist_ok=True)
        (paths.rework / "text" / "gen.txt").write_text("Model output that must never teach the judge anything new.\n")
        Ingestor(IngestConfig(), WatchConfig(), paths, store).scan()
        assert load_ngram(jc, paths, store).fingerprint == before


def test_hf_reference_refuses_the_state_dir_and_a_missing_dir(ingested):
    cfg, paths = ingested
    (paths.state / "models" / "gen-0000").mkdir(parents=True)
    with pytest.raises(ConfigError, match="never the author"):
        load_hf(JudgeConfig(reference="hf", reference_path=str(paths.state / "models" / "gen-0000")), paths)
    with pytest.raises(ConfigError, match='judge.reference_path = "nowhere": no directory .* never downloads'):
        load_hf(JudgeConfig(reference="hf", reference_path="nowhere"), paths)
    with pytest.raises(ConfigError, match="GGUF file .* does not exist"):
        load_hf(JudgeConfig(reference="hf", reference_path="missing.gguf"), paths)
    (paths.root / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json; use a directory") as err:
        load_hf(JudgeConfig(reference="hf", reference_path="empty"), paths)
    assert "scratch" not in str(err.value)
    with pytest.raises(ConfigError, match="reference_path"):
        load_hf(JudgeConfig(reference="hf"), paths)


@pytest.fixture
def logprob_server():
    """A fake OpenAI-compatible /v1/completions: one token per character, log-prob -1 for letters, -3 else."""

    def respond(body):
        text = body["prompt"]
        lps = [None] + [-1.0 if ch.isalpha() else -3.0 for ch in text[1:]]
        return {"choices": [{"text": text, "logprobs": {"token_logprobs": lps, "text_offset": list(range(len(text)))}}]}

    with fake_endpoint(respond) as (url, seen):
        yield url, seen


def test_endpoint_reference_scores_the_continuation_only(logprob_server):
    url, seen = logprob_server
    ref = EndpointReference(url)
    letters, symbols = ref.nll(["12345 "] * 2, ["abcd", "!?#$"])
    assert letters == pytest.approx(1.0) and symbols == pytest.approx(3.0)
    assert seen[0]["echo"] is True and seen[0]["max_tokens"] == 0 and seen[0]["prompt"] == "12345 abcd"


def test_endpoint_reference_is_local_only_and_unreachable_is_nan():
    with pytest.raises(ConfigError, match="reference_url"):
        EndpointReference("http://example.com:8000")
    (score,) = EndpointReference("http://127.0.0.1:9", timeout=2).nll(["a"], ["b"])
    assert score != score


def test_score_memo_computes_each_pair_once_and_never_keeps_a_failure():
    calls: list[list[tuple[str, str]]] = []

    def compute(prompts: list[str], conts: list[str]) -> list[float]:
        calls.append(list(zip(prompts, conts)))
        return [float("nan") if c == "down" else float(len(c)) for c in conts]

    memo = ScoreMemo(size=3)
    assert memo.get(["p", "p", "q"], ["ab", "ab", "down"], compute) == [
        2.0,
        2.0,
        pytest.approx(float("nan"), nan_ok=True),
    ]
    assert calls == [[("p", "ab"), ("q", "down")]]  # the repeated pair is scored once
    assert memo.get(["p", "q"], ["ab", "down"], compute)[0] == 2.0
    assert calls[-1] == [("q", "down")]  # a nan is asked again; the kept score is not
    memo.get(["r", "s", "t"], ["x", "yy", "zzz"], compute)
    assert ("p", "ab") not in memo.scores and len(memo.scores) == 3  # the oldest goes first


def test_hf_reference_takes_a_gguf_file_converted_once_and_scores_with_it(ingested):
    pytest.importorskip("gguf")
    from tiny_models import write_tiny_gguf

    cfg, paths = ingested
    write_tiny_gguf(paths.root / "judge.gguf")
    ref = load_hf(JudgeConfig(reference="hf", reference_path="judge.gguf"), paths)
    assert [d.name.startswith("judge-") for d in (paths.state / "base").iterdir()] == [True]
    (a, b) = ref.nll(["The harbor "] * 2, ["was quiet.", "was quiet."])
    assert a == b and 0 < a < float("inf")


def test_fluency_of_a_model_counts_neither_blank_tokens_nor_repeats():
    blank = frozenset({9})
    ids = [1, 2, 3, 4, 9, 9, 1, 2, 3, 4, 5]
    # The second 1 2 3 4 is counted up to its third token: the 4-gram (1, 2, 3, 4) is the first one seen again.
    assert counted_tokens(ids, blank) == [True] * 4 + [False, False] + [True] * 3 + [False, True]
    uni = Unigram({1: 9, 2: 1}, total=10, vocab=4, k=1.0)
    assert uni.nll(1) == pytest.approx(-math.log(10 / 14)) and uni.nll(3) == pytest.approx(-math.log(1 / 14))


def test_hf_reference_fluency_uses_token_frequencies_of_orig_cached_in_the_state_dir(ingested):
    pytest.importorskip("gguf")
    from tiny_models import write_tiny_gguf

    cfg, paths = ingested
    write_tiny_gguf(paths.root / "judge.gguf")
    jc = JudgeConfig(reference="hf", reference_path="judge.gguf")
    with Store.open(paths.db) as store:
        ref = load_hf(jc, paths, store)
        assert has_fluency(ref) and ref.unigram.total > 100
        assert len(list((paths.state / "judge").glob("unigram-*.pkl"))) == 1
        assert load_hf(jc, paths, store).unigram == ref.unigram  # from the cache
    line = "the boats came home at dusk. "
    (nll, uni), (nll_rep, uni_rep) = ref.scores(["The harbor "] * 2, [line, line * 4])
    assert 0 < nll < float("inf") and 0 < uni < float("inf")
    # The repeats are not counted: four copies score as one, where the mean over every token would drop.
    assert nll_rep == pytest.approx(nll, rel=0.2) and uni_rep == pytest.approx(uni, rel=0.2)
    assert not has_fluency(load_hf(jc, paths))  # no store, no word frequencies
