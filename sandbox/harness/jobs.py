"""One job, start to verdict: write its files, compile and run them in limited children, run the
checks in the tester, count them, and clean up (the pid namespace swept when the harness owns it)."""

from __future__ import annotations

import json
import os
import signal
import time

from .children import Child, Launcher, supervise
from .common import REPORTED, program


def classify_crash(child: Child) -> tuple[str, str]:
    """Status and reason for a child that did not exit 0."""
    rc = child.proc.returncode
    tail = last_line(child.text("err"))
    if child.proc.lost:
        return (
            "error",
            f"the sandbox's process launcher died while the {child.name} ran"
            " (a candidate can signal it: it is their parent)",
        )
    if "MemoryError" in child.text("err") or "Cannot allocate memory" in child.text("err"):
        return "memory", f"{child.name} ran out of memory: {tail}"
    if rc is not None and rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU:
            return "timeout", f"{child.name} exceeded its CPU time limit"
        if sig == signal.SIGKILL:
            return "memory", f"{child.name} was killed (SIGKILL, most likely the memory limit)"
        return "error", f"{child.name} was killed by signal {signal.Signals(sig).name}"
    return "error", f"{child.name} exited with code {rc}: {tail}" if tail else f"{child.name} exited with code {rc}"


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def safe_relpath(name: str) -> str:
    norm = os.path.normpath(name)
    if not name or os.path.isabs(name) or norm.startswith("..") or "\0" in name:
        raise ValueError(f"bad file name {name!r}: must be a relative path inside the scratch dir")
    return norm


def sweep_namespace(keep: int | None) -> bool:
    """Kill every process of this pid namespace except init, us and `keep` (the launcher); True if something survived.

    Only ever called with ``--pidns``, i.e. when the harness is the sole tenant of
    its own pid namespace (docker, bwrap); never on the process backend.
    """
    spare = {1, os.getpid(), keep}

    def others() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in spare:
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        state = f.read().rsplit(b")", 1)[1].split()[0]
                except (OSError, IndexError):
                    continue
                if state not in (b"Z", b"X"):
                    found.append(int(entry))
        return found

    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        pids = others()
        if not pids:
            return False
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    return bool(others())


class CannotStart(Exception):
    pass


def private_dir(parent: str, prefix: str) -> str:
    """A new directory of ours under `parent` (tempfile.mkdtemp, without importing tempfile and random)."""
    while True:
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def remove_tree(path: str) -> None:
    try:
        os.rmdir(path)  # the usual case for a tester's directory: empty
    except OSError:
        import shutil  # it imports the compression modules: only a directory with files pays for it

        shutil.rmtree(path, ignore_errors=True)


def run_job(job: dict, scratch: str, pidns: bool, launcher: Launcher) -> dict:
    """Run one job in the empty directory `scratch`; always returns a result dict
    (never raises for candidate behaviour)."""
    start = time.monotonic()
    limits = dict(job["limits"])
    limits["output_bytes"] = limits["output_kb"] * 1024
    deadline = start + limits["timeout_s"]
    checks: list[dict] = []
    children: list[Child] = []
    result = {"status": "error", "reason": "", "exit_code": None}

    def spawn(name: str, argv: list[str], **kw) -> Child:
        try:
            child = Child(name, launcher, argv, limits, cwd=kw.pop("cwd", scratch), **kw)
        except OSError as e:
            raise CannotStart(f"the sandbox could not start the {name}: {e}") from None
        children.append(child)
        return child

    def finish(status: str, reason: str) -> dict:
        result.update(status=status, reason=reason)
        return result

    try:
        files = {safe_relpath(k): v for k, v in job.get("files", {}).items()}
        for rel, text in files.items():
            path = os.path.join(scratch, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        sources = sorted(rel for rel in files if rel.endswith(".py"))
        entry = safe_relpath(job["entry"]) if job.get("entry") else None

        # Every .py file compiles before any candidate code runs. With an entry program that
        # happens in the program's own process (it reports the compile on a pipe first, then
        # runs): one child per verdict instead of two.
        if entry or sources:
            stdin = (job.get("stdin") or "").encode("utf-8", "replace") if entry else b""
            first = spawn(
                "program" if entry else "compile", [entry] if entry else None, stdin=stdin, compile_first=sources
            )
            stop = supervise([first], [first], deadline)
            if sources and not first.compiled():
                first.name = "compile"
                if stop:
                    return finish(
                        stop,
                        "compiling took longer than the time limit"
                        if stop == "timeout"
                        else "the compiler wrote more output than allowed",
                    )
                status, reason = classify_crash(first)
                if status == "error" and first.proc.returncode == REPORTED:
                    reason = f"does not compile: {last_line(first.text('err'))}"
                return finish(status, reason)
            if sources:
                checks.append({"name": "compile", "ok": True, "message": ""})

        answer = job.get("answer")
        if entry:
            prog = first
            result["exit_code"] = prog.proc.returncode
            if stop:
                return finish(
                    stop,
                    f"the program did not finish within {limits['timeout_s']:g} s"
                    if stop == "timeout"
                    else f"the program wrote more than {limits['output_kb']} KiB",
                )
            if prog.proc.returncode != 0:
                return finish(*classify_crash(prog))
            checks.append({"name": "program exits 0", "ok": True, "message": ""})
            if answer is None:
                answer = prog.text("out")

        expected = job.get("expected")
        if expected is not None:
            got = (answer or "").strip()
            ok = got == expected.strip()
            checks.append(
                {
                    "name": "expected answer",
                    "ok": ok,
                    "message": "" if ok else f"expected {expected.strip()[:200]!r}, got {got[:200]!r}",
                }
            )

        tests, checker, doctests = job.get("tests"), job.get("checker"), bool(job.get("doctests"))
        if tests or checker or doctests:
            status = run_tester(job, limits, sources, answer, spawn, scratch, deadline, checks)
            if status:
                return finish(*status)

        if not checks:
            return finish("error", "the job defines nothing to check")
        failed = [c for c in checks if not c["ok"]]
        if failed:
            return finish(
                "fail",
                f"{len(failed)} of {len(checks)} checks failed;"
                f" first: {failed[0]['name']}: {failed[0]['message'][:300]}",
            )
        return finish("pass", f"{len(checks)} checks passed")
    except (ValueError, CannotStart) as e:
        return finish("error", str(e))
    finally:
        for c in children:
            c.close()
        result["leak"] = sweep_namespace(launcher.pid) if pidns else False
        result["checks_run"] = len(checks)
        result["checks_passed"] = sum(1 for c in checks if c["ok"])
        result["failures"] = [f"{c['name']}: {c['message']}" for c in checks if not c["ok"]]
        result["checks"] = [c["name"] for c in checks]
        cand = [c for c in children if c.name in ("program", "candidate module", "compile")]
        result["stdout"] = "".join(c.text("out") for c in cand)
        result["stderr"] = "".join(c.text("err") for c in cand)
        result["wall_ms"] = round((time.monotonic() - start) * 1000, 1)


def run_tester(job, limits, sources, answer, spawn, scratch, deadline, checks) -> tuple[str, str] | None:
    """Run the tester (and the candidate-side server when modules are needed); extend `checks`."""
    modules = {os.path.splitext(rel)[0].replace(os.sep, "."): rel for rel in sources}
    need_server = bool(job.get("tests") or job.get("doctests")) and bool(modules)
    to_tester_r, to_tester_w = os.pipe()  # server -> tester
    to_server_r, to_server_w = os.pipe()  # tester -> server
    result_r, result_w = os.pipe()  # tester -> harness
    server = None
    try:
        if need_server:
            server = spawn(
                "candidate module",
                [program("__main__"), "--role", "server", "--rpc-in", str(to_server_r), "--rpc-out", str(to_tester_w)],
                extra_fds=(to_server_r, to_tester_w),
            )
        spec = {
            "tests": job.get("tests"),
            "checker": job.get("checker"),
            "answer": answer,
            "doctests": {name: _read(scratch, rel) for name, rel in modules.items()} if job.get("doctests") else {},
            "modules": sorted(modules) if need_server else [],
            "star": job.get("module") if need_server else None,
        }
        tester_cwd = private_dir(os.path.dirname(scratch), "tester-")
        tester = spawn(
            "tester",
            [
                program("__main__"),
                "--role",
                "tester",
                "--rpc-in",
                str(to_tester_r),
                "--rpc-out",
                str(to_server_w),
                "--result-fd",
                str(result_w),
            ],
            stdin=json.dumps(spec).encode(),
            cwd=tester_cwd,
            extra_fds=(to_tester_r, to_server_w, result_w),
        )
    finally:
        for fd in (to_tester_r, to_tester_w, to_server_r, to_server_w, result_w):
            os.close(fd)
    report = bytearray()
    try:
        stop = supervise([c for c in (server, tester) if c], [tester], deadline, extra={result_r: report})
    finally:
        os.close(result_r)
        remove_tree(tester_cwd)
    if stop:
        return stop, (
            f"the checks did not finish within {limits['timeout_s']:g} s"
            if stop == "timeout"
            else f"output exceeded {limits['output_kb']} KiB"
        )
    try:
        found = json.loads(report.decode("utf-8"))["checks"]
    except (ValueError, KeyError, TypeError):
        return (
            "error",
            f"the tester reported nothing (exit code {tester.proc.returncode}): {last_line(tester.text('err'))}",
        )
    checks.extend({"name": str(c["name"]), "ok": c["ok"] is True, "message": str(c.get("message", ""))} for c in found)
    kinds = {c.get("kind") for c in found if c["ok"] is not True}
    if "memory" in kinds:
        return "memory", "the candidate ran out of memory during the checks"
    if "died" in kinds:
        why = (
            classify_crash(server)[1]
            if server and server.proc.poll() is not None
            else "the candidate process stopped answering"
        )
        return "error", f"the candidate process died during the checks: {why}"
    return None


def _read(scratch: str, rel: str) -> str:
    with open(os.path.join(scratch, rel), encoding="utf-8") as f:
        return f.read()
