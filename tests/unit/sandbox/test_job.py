"""Pure parts of the sandbox: the trust rule, job validation, the wire encoding
of the harness, and the docker container options. No sandboxes started."""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys

import pytest

from selfloop.config import SandboxConfig
from selfloop.sandbox.backends.docker import container_options
from selfloop.sandbox.job import Job, Limits, verdict_from_result
from selfloop.sandbox.runtime import harness_dir

NONCE = "a" * 32


def _harness():
    """The harness's tester module (it holds the wire encoding too), loaded from the package as shipped."""
    if "selfloop_harness" not in sys.modules:
        here = harness_dir()
        spec = importlib.util.spec_from_file_location(
            "selfloop_harness", here / "__init__.py", submodule_search_locations=[str(here)]
        )
        pkg = importlib.util.module_from_spec(spec)
        sys.modules["selfloop_harness"] = pkg
        spec.loader.exec_module(pkg)
    return importlib.import_module("selfloop_harness.tester")


def _result(**kw):
    base = {"nonce": NONCE, "status": "pass", "reason": "ok", "checks_run": 2, "checks_passed": 2, "exit_code": 0}
    return {**base, **kw}


def test_pass_needs_nonce_and_all_checks():
    assert verdict_from_result(_result(), NONCE, "x", 1.0).status == "pass"
    assert verdict_from_result(_result(nonce="b" * 32), NONCE, "x", 1.0).status == "error"
    assert verdict_from_result(_result(nonce=None), NONCE, "x", 1.0).status == "error"
    no_checks = verdict_from_result(_result(checks_run=0, checks_passed=0), NONCE, "x", 1.0)
    assert no_checks.status == "fail" and "not a pass" in no_checks.reason
    partial = verdict_from_result(_result(checks_run=3, checks_passed=2), NONCE, "x", 1.0)
    assert partial.status == "fail"


def test_foreign_lines_and_channel_problems_are_never_pass():
    assert verdict_from_result(_result(), NONCE, "x", 1.0, foreign_lines=1).status == "error"
    assert verdict_from_result(None, NONCE, "x", 1.0, problem="deadline", timeout_s=2).status == "timeout"
    assert verdict_from_result(None, NONCE, "x", 1.0, problem="died").status == "error"
    assert verdict_from_result(None, NONCE, "x", 1.0, problem="memory").status == "memory"
    assert verdict_from_result("garbage", NONCE, "x", 1.0).status == "error"


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "sandbox_error"},
        {"status": "bogus"},
        {"checks_run": "2"},
        {"checks_passed": 5},
        {"checks_passed": -1},
    ],
)
def test_malformed_results_are_errors(bad):
    assert verdict_from_result(_result(**bad), NONCE, "x", 1.0).status == "error"


def test_verdict_carries_backend_and_wall_ms():
    v = verdict_from_result(_result(stdout="hi"), NONCE, "bwrap", 12.5)
    assert (v.backend, v.wall_ms, v.stdout, v.passed) == ("bwrap", 12.5, "hi", True)
    assert v.to_dict()["status"] == "pass"


@pytest.mark.parametrize(
    "job, message",
    [
        (Job(files={"../x.py": ""}, entry="../x.py"), "bad file name"),
        (Job(files={"/etc/x.py": ""}), "bad file name"),
        (Job(files={"a.py": ""}, entry="b.py"), "not one of the job's files"),
        (Job(), "checks nothing"),
        (Job(checker="def check(a): return True"), "needs an answer"),
        (Job(files={"a.py": ""}, tests="assert 1", module="b"), "module 'b'"),
    ],
)
def test_job_validation(job, message):
    with pytest.raises(ValueError, match=message):
        job.validate()


def test_payload_holds_limits_and_nonce():
    p = Job(answer="4", expected="4").payload(Limits(timeout_s=3), NONCE)
    assert p["nonce"] == NONCE and p["limits"]["timeout_s"] == 3 and p["expected"] == "4"


def test_encoding_roundtrip_of_plain_values():
    h = _harness()
    value = [1, -(2**100), 1.5, math.inf, "s", b"\x00\xff", None, True, (1, 2), {3, 4}, frozenset({5}), {"k": [1]}]
    assert h.decode(h.encode(value, {}), lambda *a: None) == value


def test_objects_become_handles_with_identity_equality():
    h = _harness()

    class Liar:
        def __eq__(self, other):
            return True

    class SubInt(int):
        def __eq__(self, other):
            return True

    handles: dict = {}
    for obj in (Liar(), SubInt(3)):
        wire = h.encode(obj, handles)
        assert set(wire) == {"handle", "type", "callable"}
        remote = h.decode(wire, lambda hid, t, c: h.Remote(None, hid, t, c))
        assert remote != 3 and not (remote == obj)


@pytest.mark.parametrize("wire", [{"eval": "1"}, {"int": 3}, {"list": "x"}, {"dict": [[1]]}, [1, 2], 3])
def test_decoder_rejects_unknown_shapes(wire):
    h = _harness()
    with pytest.raises(h.ProtocolError):
        h.decode(wire, lambda *a: None)


def test_container_options_lock_the_container_down():
    cfg = SandboxConfig(memory_mb=256, file_mb=16, pids=32, cpus=0.5)
    o = container_options(cfg)
    assert o["network_mode"] == "none" and o["network_disabled"] is True
    assert o["read_only"] is True and o["cap_drop"] == ["ALL"] and o["security_opt"] == ["no-new-privileges"]
    assert o["mem_limit"] == o["memswap_limit"] and o["pids_limit"] == 32 and o["nano_cpus"] == 500_000_000
    assert o["user"] != "root" and not o["user"].startswith("0") and o["init"] is True
    assert "size=16m" in o["tmpfs"]["/scratch"] and o["labels"]["selfloop.sandbox"] == "1"
    assert "volumes" not in o and "/var/run/docker.sock" not in str(o)
