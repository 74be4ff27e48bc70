"""`selfloop judge check | eval` on a project: the project's judges, its orig/ as the reference, real files."""

from __future__ import annotations

import json

from harbor_prose import HARBOR

from selfloop.testing import make_project, tiny_config

PROMPT = "Early in the day "
CLEAN = "the fishing boats rocked gently at their moorings, and the baker set out fresh bread for the market."
TYPOS = "the fsihing boats rokced gently at their moornigs, and the bakre set out fresh bread for teh market."
SMALL_REFERENCE = {"judge": {"reference_order": 3, "reference_vocab": 300}}


def _project(tmp_path):
    config, _, paths = make_project(tmp_path, tiny_config(SMALL_REFERENCE))
    for i in range(4):
        (paths.orig / f"story{i}.txt").write_text("\n\n".join(HARBOR[i:] + HARBOR[:i]) + "\n")
    return config, paths


def _write(path, items):
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return str(path)


def test_judge_check_prints_each_verdict_with_every_judges_reason(tmp_path, cli):
    config, paths = _project(tmp_path)
    items = [
        {"kind": "text", "prompt": PROMPT, "a": CLEAN, "b": "the" + "\n" * 200},
        {"kind": "text", "prompt": PROMPT, "a": TYPOS, "b": CLEAN},
        {"kind": "chat", "prompt": "Tell me about the harbor.", "a": None, "b": CLEAN},
    ]
    f = _write(tmp_path / "items.jsonl", items)
    r = cli("judge", "check", f, "--json", "-c", str(config), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["status"] for row in rows] == ["reject", "accept", "accept"]
    assert rows[0]["verdicts"][-1]["status"] == "reject" and rows[0]["reason"].startswith(
        rows[0]["verdicts"][-1]["judge"]
    )
    assert [v["judge"] for v in rows[1]["verdicts"]] == ["text_quality", "a_vs_b", "doc_quality"]
    ab = rows[1]["verdicts"][1]
    assert ab["reason"] == "B beats A" and ab["score"] > 0
    # The reference and the calibration were built from orig/ into the state dir.
    assert list((paths.state / "judge").glob("reference-*.pkl")) and list((paths.state / "judge").glob("calib*.json"))

    r = cli("judge", "check", f, "-c", str(config), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1: reject") and "    a_vs_b: accept" in r.stdout


def test_judge_eval_prints_precision_recall_per_judge_and_accept_rate_per_why(tmp_path, cli):
    config, _ = _project(tmp_path)
    items = [
        {"kind": "text", "prompt": PROMPT, "a": CLEAN, "b": "the" + "\n" * 200, "label": "bad", "why": "flood"},
        {
            "kind": "text",
            "prompt": PROMPT,
            "a": CLEAN,
            "b": " ".join(sorted(CLEAN.split())),
            "label": "bad",
            "why": "sorted",
        },
        {
            "kind": "text",
            "prompt": PROMPT,
            "a": CLEAN.replace("the ", ""),
            "b": CLEAN,
            "label": "good",
            "why": "dropped",
        },
    ]
    f = _write(tmp_path / "labelled.jsonl", items)
    r = cli("judge", "eval", f, "--json", "-c", str(config), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["pipeline"]["precision"] == 1.0 and report["pipeline"]["recall"] == 1.0
    assert set(report["judges"]) == {"text_quality", "a_vs_b", "doc_quality"}
    assert {x["why"]: x["rate"] for x in report["accept_rate_by_why"]} == {"flood": 0.0, "sorted": 0.0, "dropped": 1.0}
    r = cli("judge", "eval", f, "-c", str(config), cwd=tmp_path, env={"COLUMNS": "120"})
    assert r.returncode == 0, r.stderr
    assert "pipeline" in r.stdout and "precision" in r.stdout and "sorted" in r.stdout


def test_judge_commands_name_a_bad_line(tmp_path, cli):
    config, _ = _project(tmp_path)
    f = _write(tmp_path / "bad.jsonl", [{"kind": "text", "prompt": "p", "a": None, "b": "x"}])
    r = cli("judge", "eval", f, "-c", str(config), cwd=tmp_path)
    assert r.returncode == 2 and "bad.jsonl:1: 'label' must be one of good, bad" in r.stderr
    r = cli("judge", "check", str(tmp_path / "missing.jsonl"), "-c", str(config), cwd=tmp_path)
    assert r.returncode == 2 and "no such file" in r.stderr
