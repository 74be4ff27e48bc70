"""Smoke test of the benchmarks: ``python -m bench --quick`` runs end to end and writes its figures.

Never asserts a timing: only that every benchmark produced its JSON file with
positive figures. Results go to a temporary directory, not ``bench/results``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@pytest.mark.slow
def test_quick_benchmarks_write_positive_figures(tmp_path):
    env = {**os.environ, "SELFLOOP_BENCH_RESULTS": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def figures(name: str) -> dict:
        doc = json.loads((tmp_path / f"{name}.json").read_text())
        assert doc["quick"] is True and doc["machine"]["cores"] >= 1 and doc["command"].startswith("python -m bench.")
        return doc["figures"]

    train = figures("train")
    assert all(positive(train[k]) for k in ("ratio", "mfu", "matmul_ceiling_gflops"))
    assert positive(train["trainer_child"]["tokens_per_s"]) and positive(train["hand_written"]["tokens_per_s"])

    gen = figures("generation")
    assert (
        positive(gen["batched"]["tokens_per_s"])
        and positive(gen["naive_batch1"]["tokens_per_s"])
        and positive(gen["speedup"])
    )

    sandbox = figures("sandbox")
    assert positive(sandbox["bare_python"]["median_ms"])
    usable = {n: b for n, b in sandbox["backends"].items() if "unavailable" not in b}
    assert usable, "no sandbox backend was benchmarked"
    for b in usable.values():
        for kind in ("warm_answer", "warm_program"):
            assert positive(b[kind]["verdicts_per_s"]) and positive(b[kind]["median_ms"])
        assert positive(b["oneshot_answer"]["median_ms"]) and positive(b["oneshot_program"]["median_ms"])

    ingest = figures("ingest")
    assert positive(ingest["mb_per_s"]) and positive(ingest["read_and_hash_mb_per_s"])
    assert all(r["documents"] > 0 for r in ingest["synthetic"].values())
    assert positive(ingest["serial_16x"]["mb_per_s"]) and positive(ingest["shipped_vs_serial"])
    if importlib.util.find_spec("spacy"):  # the bench extra (datatrove's Gopher filter needs it)
        assert positive(ingest["datatrove_16x"]["mb_per_s"])
        assert positive(ingest["datatrove_16x"]["selfloop_serial_vs_datatrove"])

    reload = figures("reload")
    assert positive(reload["hot_reload_ms"]["median"]) and positive(reload["cold_start_process_s"]["median"])

    e2e = figures("end_to_end")
    assert positive(e2e["seconds"]) and e2e["dropped_file_documents"] > 0

    for name in ("train", "generation", "sandbox", "ingest", "reload"):
        scaling = [v for k, v in figures(name).items() if k.startswith("scaling")]
        assert scaling and all(s["growth"] in ("sublinear", "linear", "superlinear") for s in scaling)
    assert "| what | figure |" in proc.stdout  # the summary table was printed
