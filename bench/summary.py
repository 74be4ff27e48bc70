"""The benchmark figures against their targets, as a Markdown table (read from ``bench/results``).

``python -m bench.summary`` prints it; BENCHMARKS.md carries a copy. Pure
formatting of the JSON files: a missing or failed benchmark shows as missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import RESULTS

Row = tuple[str, str, str, str, str]  # what, figure, in-run baseline, target, met


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _train(f: dict[str, Any]) -> list[Row]:
    t, m = f["trainer_child"], f["hand_written"]
    return [
        (
            "training tokens/s",
            f"{t['tokens_per_s']:.0f} (selfloop child, Trainer)",
            f"{m['tokens_per_s']:.0f} hand-written AdamW loop; ratio {f['ratio']:.3f}",
            ">= 0.95x",
            _met(f["ratio"] >= 0.95),
        ),
        (
            "training MFU",
            f"{f['mfu']:.2f} ({f['model_gflops']} GFLOP/s)",
            f"fp32 matmul ceiling {f['matmul_ceiling_gflops']} GFLOP/s",
            ">= 0.5",
            _met(f["mfu"] >= 0.5),
        ),
    ]


def _generation(f: dict[str, Any]) -> list[Row]:
    return [
        (
            "rework generation tokens/s",
            f"{f['batched']['tokens_per_s']:.0f} (batched)",
            f"{f['naive_batch1']['tokens_per_s']:.0f} naive batch-1; {f['speedup']:.2f}x",
            ">= 6x",
            _met(f["speedup"] >= 6),
        )
    ]


def _sandbox(f: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    bare = f["bare_python"]
    base = f"bare python -c {bare['median_ms']} ms ({bare['runs_per_s_2_parallel']}/s two at a time)"
    drun = f.get("docker_run") or {}
    for name, b in f["backends"].items():
        if "unavailable" in b:
            rows.append((f"sandbox {name}", "unavailable", b["unavailable"][:80], "", ""))
            continue
        wa, wp = b["warm_answer"], b["warm_program"]
        rows.append(
            (
                f"sandbox {name}: warm verdicts/s (answer / program)",
                f"{wa['verdicts_per_s']} / {wp['verdicts_per_s']}",
                base,
                ">= 150",
                _met(wa["verdicts_per_s"] >= 150) + " / " + _met(wp["verdicts_per_s"] >= 150),
            )
        )
        over = b["warm_overhead_ms"]
        rows.append(
            (
                f"sandbox {name}: warm overhead ms (answer / program - bare python)",
                f"{over['answer']} / {over['program_minus_bare_python']}",
                base,
                "<= 10 median",
                _met(over["answer"] <= 10) + " / " + _met(over["program_minus_bare_python"] <= 10),
            )
        )
        one = f"{b['oneshot_answer']['median_ms']} / {b['oneshot_program']['median_ms']}"
        target = "<= 60" if name == "bwrap" else ""
        met = (
            (_met(b["oneshot_answer"]["median_ms"] <= 60) + " / " + _met(b["oneshot_program"]["median_ms"] <= 60))
            if name == "bwrap"
            else ""
        )
        baseline = f"docker run {drun.get('median_ms')} ms" if name == "docker" and "median_ms" in drun else base
        rows.append((f"sandbox {name}: one-shot ms (answer / program)", one, baseline, target, met))
    return rows


def _ingest(f: dict[str, Any]) -> list[Row]:
    serial = f"; workers = 1: {f['serial_16x']['mb_per_s']}" if f.get("serial_16x") else ""
    return [
        (
            "ingest MB/s",
            f"{f['mb_per_s']} (16x corpus){serial}"
            + (f"; starter corpus {f['starter_corpus']['mb_per_s']}" if f.get("starter_corpus") else ""),
            f"read + sha256 {f['read_and_hash_mb_per_s']} MB/s",
            ">= 20",
            _met(f["mb_per_s"] >= 20),
        )
    ]


def _e2e(f: dict[str, Any]) -> list[Row]:
    return [
        (
            "file dropped -> promoted generation",
            f"{f['seconds']} s ({'promoted' if f['promoted'] else 'NOT promoted'})",
            "phases: " + ", ".join(f"{k} {v}" for k, v in f["phases_s"].items()),
            "<= 120 s",
            _met(f["promoted"] and f["seconds"] <= 120),
        )
    ]


def _reload(f: dict[str, Any]) -> list[Row]:
    return [
        (
            "hot reload after promotion",
            f"{f['hot_reload_ms']['median']} ms",
            f"cold start {f['cold_start_process_s']['median']} s (fresh process)",
            "<= 1 s",
            _met(f["hot_reload_ms"]["median"] <= 1000),
        )
    ]


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "train": _train,
    "generation": _generation,
    "sandbox": _sandbox,
    "ingest": _ingest,
    "end_to_end": _e2e,
    "reload": _reload,
}


def growth_rows(name: str, figures: dict[str, Any]) -> list[Row]:
    rows = []
    for key, value in figures.items():
        if key.startswith("scaling") and isinstance(value, dict) and "exponent" in value:
            costs = ", ".join(f"{c:g}" for c in value["costs"])
            rows.append(
                (
                    f"cost growth: {name} ({key.removeprefix('scaling_').replace('_', ' ')})",
                    f"exponent {value['exponent']} ({value['growth']})",
                    f"seconds at 1x/4x/16x: {costs}",
                    "linear or better",
                    _met(value["growth"] != "superlinear"),
                )
            )
    return rows


def load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def render(results: Path = RESULTS, names: Sequence[str] | None = None) -> str:
    names = list(names or ROWS)
    lines = ["| what | figure | baseline in the same run | target | met |", "| --- | --- | --- | --- | --- |"]
    growth: list[Row] = []
    for name in names:
        doc = load(results, name)
        if doc is None:
            lines.append(f"| {name} | missing (not run or failed) | | | |")
            continue
        try:
            rows = ROWS[name](doc["figures"])
        except (KeyError, TypeError) as e:
            rows = [(name, f"unreadable figures ({e})", "", "", "")]
        tag = f" [{'quick' if doc.get('quick') else 'full'}; load {doc['load_before'][0]}->{doc['load_after'][0]}]"
        if doc.get("quick"):  # tiny sizes say nothing about a target
            rows = [(*r[:4], "n/a (quick run)" if r[4] else "") for r in rows]
        lines += [f"| {r[0]}{tag if i == 0 else ''} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for i, r in enumerate(rows)]
        growth += growth_rows(name, doc["figures"])
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for r in growth]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
