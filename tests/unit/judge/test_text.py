"""The text judges on real inputs: a real Ingestor over a temp corpus, a tiny trained GPT-2."""

import json

import pytest
from fake_endpoint import chat_answer, fake_endpoint
from harbor_prose import HARBOR

from selfloop.config import Config, IngestConfig, JudgeConfig, ProjectPaths
from selfloop.errors import ConfigError
from selfloop.ingest.ingestor import Ingestor
from selfloop.judge import Candidate, JudgeContext, Pipeline
from selfloop.judge.reference import ModelReference
from selfloop.judge.text_judges import faithfulness, word_recall
from selfloop.store import Store

SENTENCE = "The quiet river runs past the old mill and the green fields every morning."
KNOWN = "A lighthouse keeper wrote long letters about storms, ships and the gulls on the rocks. " * 3


@pytest.fixture
def corpus(tmp_path):
    cfg = Config()
    paths = ProjectPaths.of(cfg, tmp_path)
    paths.orig.mkdir(parents=True)
    (paths.orig / "known.txt").write_text(KNOWN)
    store = Store.open(paths.db)
    ingestor = Ingestor(cfg.ingest, cfg.watch, paths, store)
    ingestor.scan()
    yield ingestor
    store.close()


def _quality(corpus):
    ctx = JudgeContext(
        JudgeConfig(text=["text_quality"], chat=["text_quality"]),
        resources={"corpus": corpus, "ingest_config": IngestConfig()},
    )
    return Pipeline(ctx, kinds=["text", "chat"])


def test_text_quality_rejects_with_reasons_and_accepts_new_good_text(corpus):
    pipe = _quality(corpus)
    good = "Bread rises because yeast turns sugar into gas, and the dough traps the bubbles while it bakes."
    outcomes = pipe.judge_batch(
        [
            Candidate("text", good),
            Candidate("text", "short"),
            Candidate("text", "buy buy buy buy " * 40),
            Candidate("text", KNOWN),  # already in the corpus
            Candidate("text", good),  # duplicate within the batch
            Candidate("text", "\x00\x01\x02" * 40),
            Candidate("chat", json.dumps({"messages": [{"role": "user", "content": "hi"}]})),
        ]
    )
    reasons = [o.reason for o in outcomes]
    assert outcomes[0].accepted, reasons[0]
    assert "too_short" in reasons[1]
    assert any(code in reasons[2] for code in ("dup_line", "top_ngram", "repetition"))
    assert "duplicate" in reasons[3]
    assert "batch_duplicate" in reasons[4]
    assert not outcomes[5].accepted
    assert "malformed_chat" in reasons[6]
    assert not any(o.accepted for o in outcomes[1:])


@pytest.fixture(scope="module")
def trained_lm():
    """A 2-layer GPT-2 that has memorised one sentence (a few hundred ms of training)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from selfloop.model.tokenizer import train_tokenizer

    tok = train_tokenizer([SENTENCE] * 20, 300, max_length=64)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tok),
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=2,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    ids = torch.tensor([tok(SENTENCE)["input_ids"]] * 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval(), tok


def _ab(trained_lm, **judge):
    model, tok = trained_lm
    cfg = JudgeConfig(text=["a_vs_b"], **judge)
    return Pipeline(JudgeContext(cfg, resources={"reference": ModelReference(model, tok)}), kinds=["text"])


def test_a_vs_b_accepts_the_likelier_rewrite_and_rejects_the_worse(trained_lm):
    prompt, good = "The quiet river runs past", " the old mill and the green fields every morning."
    bad = " zqx vvk jjj the mmm fields qqq."
    pipe = _ab(trained_lm, ab_scorers=["perplexity"])
    win, lose, fresh = pipe.judge_batch(
        [
            Candidate("text", prompt + good, source=bad, metadata={"prompt": prompt, "completion": good}),
            Candidate("text", prompt + bad, source=good, metadata={"prompt": prompt, "completion": bad}),
            Candidate("text", prompt + good, source=None, metadata={"prompt": prompt, "completion": good}),
        ]
    )
    assert win.accepted and win.verdicts[0].detail["nll_b"] < win.verdicts[0].detail["nll_a"]
    assert not lose.accepted and lose.reason.startswith("a_vs_b: lost_a_vs_b: perplexity")
    assert fresh.accepted and fresh.verdicts[0].score is not None


def test_a_vs_b_margin_and_quality_scorer(trained_lm):
    prompt, good = "The quiet river runs past", " the old mill and the green fields every morning."
    same = Candidate("text", prompt + good, source=good, metadata={"prompt": prompt, "completion": good})
    assert not _ab(trained_lm, ab_scorers=["perplexity"]).judge(same).accepted  # a tie is not a win
    junk = " ;;;; ]]]] #### @@@@ ;;;; ]]]] #### @@@@ ;;;; ]]]] ####"
    outcome = _ab(trained_lm, ab_scorers=["quality"]).judge(
        Candidate("text", prompt + junk, source=good, metadata={"prompt": prompt, "completion": junk})
    )
    assert not outcome.accepted and "quality" in outcome.reason


def test_a_vs_b_refuses_unknown_scorers_and_remote_endpoints(trained_lm):
    with pytest.raises(ConfigError, match="unknown scorer"):
        _ab(trained_lm, ab_scorers=["vibes"])
    with pytest.raises(ConfigError, match="localhost"):
        _ab(trained_lm, ab_scorers=["external"], external_url="http://example.com:8000")


@pytest.fixture
def local_judge_server():
    def respond(body):
        text = body["messages"][0]["content"]
        return chat_answer("B" if "mill" in text.split("B:")[1] else "A")

    with fake_endpoint(respond) as (url, answers):
        yield url, answers


def test_a_vs_b_external_judge_on_localhost(trained_lm, local_judge_server):
    url, requests = local_judge_server
    pipe = _ab(trained_lm, ab_scorers=["external"], external_url=url)
    prompt = "The quiet river runs past"
    good, bad = " the old mill.", " nothing at all."
    win = pipe.judge(Candidate("text", prompt + good, source=bad, metadata={"prompt": prompt, "completion": good}))
    lose = pipe.judge(Candidate("text", prompt + bad, source=good, metadata={"prompt": prompt, "completion": bad}))
    assert win.accepted and win.verdicts[0].detail["external"] == "B"
    assert not lose.accepted and "external judge preferred A" in lose.reason
    assert len(requests) == 2


def test_a_vs_b_never_scores_with_the_model_being_judged(trained_lm):
    """The champion handed over as ``model`` (as the rework phase once did) is not a reference."""
    model, tok = trained_lm
    cfg = JudgeConfig(text=["a_vs_b"], ab_scorers=["perplexity"])
    pipe = Pipeline(JudgeContext(cfg, resources={"model": model, "tokenizer": tok}), kinds=["text"])
    prompt, good = "The quiet river runs past", " the old mill and the green fields every morning."
    with pytest.raises(ConfigError, match="never scores with the model being judged"):
        pipe.judge(Candidate("text", prompt + good, source=good, metadata={"prompt": prompt, "completion": good}))
    with pytest.raises(ConfigError, match="fluency"):
        _ab(trained_lm, ab_scorers=["fluency"])


@pytest.fixture(scope="module")
def ngram():
    from selfloop.judge.reference import build_ngram

    return build_ngram(list(enumerate(HARBOR * 4)), order=3, vocab_size=300, folds=2)


def _fluency(ngram, **judge):
    cfg = JudgeConfig(text=["a_vs_b"], **judge)
    return Pipeline(JudgeContext(cfg, resources={"reference": ngram}), kinds=["text"])


def _pair(prompt: str, a: str, b: str) -> Candidate:
    return Candidate("text", prompt + b, source=a, metadata={"prompt": prompt, "completion": b})


def test_fluency_prefers_the_clean_text_to_a_word_salad_or_its_damaged_copy(ngram):
    pipe = _fluency(ngram, ab_scorers=["fluency"])
    prompt = "Early in the day "
    clean = "the fishing boats rocked gently at their moorings, and a gull circled over the market square."
    salad = "the of and to the of and that with be the have to of the and of to the with."
    shuffled = "market the moorings gull rocked a square, boats at the over gently fishing their and circled."
    dropped = "the fishing rocked gently their moorings, a gull circled the market."
    lose_salad, lose_shuffled, win = pipe.judge_batch(
        [_pair(prompt, clean, salad), _pair(prompt, clean, shuffled), _pair(prompt, dropped, clean)]
    )
    assert not lose_salad.accepted and "fluency" in lose_salad.reason
    assert not lose_shuffled.accepted
    assert win.accepted, win.reason
    v = win.verdicts[0]
    assert v.score == v.detail["fluency_gain"] > 0 and v.detail["fluency_b"] > v.detail["fluency_a"]


def test_a_duplicated_half_loses_to_the_whole_on_quality_when_fluency_ties(ngram):
    prompt = "Early in the day "
    clean = (
        "the fishing boats rocked gently at their moorings. A gull circled over the market square while the baker "
        "opened his shutters and set out fresh bread. The lighthouse keeper climbed the stairs to light the lamp."
    )
    words = clean.split(" ")
    doubled = " ".join(words + words[: len(words) // 2] + words[: len(words) // 2])
    cand = _pair(prompt, doubled, clean)
    won = _fluency(ngram, ab_scorers=["fluency", "quality"]).judge(cand)
    assert won.accepted, won.reason
    # Without the quality rules, a near tie is not a win.
    strict = _fluency(ngram, ab_scorers=["fluency"], ab_fluency_margin=0.5).judge(cand)
    assert not strict.accepted and "fluency" in strict.reason


def test_a_frozen_hf_dir_outside_the_state_dir_is_a_reference(trained_lm, tmp_path):
    from selfloop.judge.reference import load_reference
    from selfloop.store import Store
    from selfloop.testing import make_project, tiny_config

    model, tok = trained_lm
    frozen = tmp_path / "frozen-judge"
    model.save_pretrained(frozen)
    tok.save_pretrained(frozen)
    _, _, paths = make_project(tmp_path / "project", tiny_config())
    with Store.open(paths.db) as store:
        ref = load_reference(JudgeConfig(reference="hf", reference_path=str(frozen)), paths, store)
    prompt = "The quiet river runs past"
    memorized, junk = ref.nll([prompt, prompt], [SENTENCE[len(prompt) :], " zqx vvk jjj mmm qqq."])
    assert memorized < junk
    cfg = JudgeConfig(text=["a_vs_b"], ab_scorers=["perplexity"])
    pipe = Pipeline(JudgeContext(cfg, resources={"reference": ref}), kinds=["text"])
    good = SENTENCE[len(prompt) :]
    assert pipe.judge(
        Candidate("text", SENTENCE, source=" zqx vvk.", metadata={"prompt": prompt, "completion": good})
    ).accepted


def test_faithful_scorer_rejects_a_fluent_b_that_drops_what_a_says(trained_lm):
    a = "the old mill and the green fields every morning, where the river turns twice before the bridge."
    fixed = "the old mill and the green fields every morning, where the river turns twice before the bridge."
    typos = "teh old mlil and the grene fields evry morning, where the rivr turns twice befor the bridge."
    summary = "a mill."
    pipe = _ab(trained_lm, ab_scorers=["faithful"])
    kept = pipe.judge(Candidate("text", fixed, source=typos, metadata={"prompt": "", "completion": fixed}))
    assert kept.accepted and kept.verdicts[0].detail["faithful"] > 60  # a typo costs a few character n-grams
    lost = pipe.judge(Candidate("text", summary, source=a, metadata={"prompt": "", "completion": summary}))
    assert not lost.accepted and lost.reason.startswith("a_vs_b: unfaithful: B keeps too little")
    assert faithfulness(a, a) == pytest.approx(100.0) and faithfulness(a, " ") == 0.0


def test_faithful_scorer_rejects_a_b_that_drops_a_clause_and_keeps_a_repair(trained_lm):
    # A real rewrite by SmolLM2 (bench.judge_rewrites) dropped a clause: chrF still 80, so only word recall sees it.
    a = (
        "Importing the package is cheap on purpose: torch and transformers are imported only by the commands "
        "that need them, so `selfloop --help` and `selfloop status` answer at once."
    )
    dropped = "Importing the package is cheap on purpose: `selfloop --help` and `selfloop status` answer at once."
    pipe = _ab(trained_lm, ab_scorers=["faithful"])
    lost = pipe.judge(Candidate("text", dropped, source=a, metadata={"prompt": "", "completion": dropped}))
    assert faithfulness(a, dropped) > 50 and not lost.accepted
    assert lost.reason.startswith("a_vs_b: unfaithful: B drops 10 of A's words (60% kept < 90%), e.g. 'torch'")
    assert lost.verdicts[0].detail["word_recall"] == 0.6
    # Repairs keep A's words: typos within rapidfuzz's ratio, merged words by their letters, case by lowercasing.
    for damaged in (
        a.replace("package", "pakcage").replace("transformers", "transfromers"),
        a.replace("the package", "thepackage").replace("only by", "onlyby"),
        a.upper(),
    ):
        fixed = pipe.judge(Candidate("text", a, source=damaged, metadata={"prompt": "", "completion": a}))
        assert fixed.accepted and fixed.verdicts[0].detail["word_recall"] == 1.0, damaged
    assert word_recall(a, a) == (1.0, []) and word_recall("1 2 3", "") == (1.0, [])  # no words: nothing to drop
    assert word_recall("the cat sat", "") == (0.0, ["the", "cat", "sat"])
