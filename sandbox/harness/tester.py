"""The tester role, the trusted side: runs the job's checker, tests and doctests against candidate
modules reached only through RPC (`Remote` objects, equal only to themselves), and reports each check
on its result descriptor. It never executes candidate code."""

from __future__ import annotations

import builtins
import json
import os
import sys

from .common import MAX_RPC_LINE, forget_harness, make_undumpable
from .wire import ProtocolError, decode, encode


class CandidateDied(Exception):
    pass


class RemoteError(Exception):
    """A candidate exception whose type is not a built-in exception."""


class Remote:
    """A candidate object seen from the tester. Equality is identity of the handle."""

    __slots__ = ("_rpc", "_h", "_type", "_callable")

    def __init__(self, rpc: "Rpc", h: int, type_name: str, is_callable: bool):
        object.__setattr__(self, "_rpc", rpc)
        object.__setattr__(self, "_h", h)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_callable", is_callable)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._rpc.ask(op="getattr", h=self._h, name=name)

    def __call__(self, *args, **kwargs):
        return self._rpc.ask(
            op="call",
            h=self._h,
            args=[self._rpc.enc(a) for a in args],
            kwargs={k: self._rpc.enc(v) for k, v in kwargs.items()},
        )

    def __getitem__(self, key):
        return self._rpc.ask(op="getitem", h=self._h, key=self._rpc.enc(key))

    def __len__(self):
        n = self._rpc.ask(op="len", h=self._h)
        if type(n) is not int:
            raise TypeError("len() of a candidate object did not return an int")
        return n

    def __iter__(self):
        items = self._rpc.ask(op="iter", h=self._h)
        return iter(items if type(items) is list else [])

    def __contains__(self, item):
        return self._rpc.ask(op="contains", h=self._h, item=self._rpc.enc(item)) is True

    def __bool__(self):
        return self._rpc.ask(op="bool", h=self._h) is True

    def __repr__(self):
        text = self._rpc.ask(op="repr", h=self._h)
        return text if type(text) is str else f"<{self._type}>"

    def __str__(self):
        text = self._rpc.ask(op="str", h=self._h)
        return text if type(text) is str else f"<{self._type}>"

    def __eq__(self, other):
        return type(other) is Remote and other._h == self._h

    def __hash__(self):
        return hash(("remote", self._h))


class Rpc:
    def __init__(self, rpc_in: int, rpc_out: int):
        self.reader = os.fdopen(rpc_in, "rb")
        self.writer = os.fdopen(rpc_out, "wb")

    def enc(self, value):
        if type(value) is Remote:
            return {"handle": value._h, "type": value._type, "callable": value._callable}
        return encode(value, None)

    def ask(self, **req):
        try:
            self.writer.write(json.dumps(req).encode() + b"\n")
            self.writer.flush()
            line = self.reader.readline(MAX_RPC_LINE)
        except (BrokenPipeError, OSError):
            line = b""
        if not line.endswith(b"\n"):
            raise CandidateDied("the candidate process exited or stopped answering")
        try:
            reply = json.loads(line)
        except ValueError:
            raise ProtocolError("the candidate process sent a malformed reply") from None
        if type(reply) is not dict:
            raise ProtocolError("the candidate process sent a malformed reply")
        if "ok" in reply:
            return decode(reply["ok"], lambda h, t, c: Remote(self, h, t, c))
        err = reply.get("raise")
        if type(err) is not dict:
            raise ProtocolError("the candidate process sent a malformed reply")
        name, message = str(err.get("type")), str(err.get("message"))
        exc = getattr(builtins, name, None)
        if isinstance(exc, type) and issubclass(exc, Exception) and exc is not StopIteration:
            raise exc(message)
        raise RemoteError(f"{name}: {message}")


class RemoteModule(type(sys)):  # types.ModuleType
    def __init__(self, rpc: Rpc, name: str):
        super().__init__(name)
        self.__remote = rpc.ask(op="import", module=name)

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.__remote, attr)


class RemoteFinder:
    """Makes `import solution` in tests yield a proxy of the candidate's module."""

    def __init__(self, rpc: Rpc, names: list[str]):
        self.rpc, self.names, self.cache = rpc, set(names), {}

    def find_module(self, name, path=None):  # pragma: no cover - legacy protocol
        return None

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        import importlib.machinery

        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return RemoteModule(self.rpc, spec.name)

    def exec_module(self, module):
        pass


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, CandidateDied):
        return "died"
    return "failed"


def remember_source(filename: str, source: str) -> None:
    """Let tracebacks of exec'd test code show the failing line."""
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def describe(exc: BaseException, filename: str) -> str:
    import traceback  # only a failing check pays for it

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    where = f" (line {frames[-1].lineno}: {frames[-1].line.strip()})" if frames else ""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return (text + where)[:1000]


def tester_main(rpc_in: int, rpc_out: int, result_fd: int) -> int:
    make_undumpable()
    forget_harness()
    spec = json.loads(sys.stdin.buffer.read())
    result = os.fdopen(result_fd, "w")
    os.close(0)
    rpc = Rpc(rpc_in, rpc_out)
    checks: list[dict] = []

    def record(name: str, ok: bool, message: str = "", kind: str = "failed") -> None:
        checks.append({"name": name, "ok": ok, "message": message, "kind": "ok" if ok else kind})

    if spec["modules"]:
        sys.meta_path.insert(0, RemoteFinder(rpc, spec["modules"]))

    if spec.get("checker") is not None:
        run_checker(spec["checker"], spec.get("answer"), record)
    if spec.get("tests"):
        run_tests(rpc, spec["tests"], spec.get("star"), record)
    for name, source in spec.get("doctests", {}).items():
        run_doctests(rpc, name, source, record)
    result.write(json.dumps({"checks": checks}))
    result.close()
    return 0


def run_checker(source: str, answer, record) -> None:
    ns: dict = {"__name__": "checker"}
    remember_source("checker.py", source)
    try:
        exec(compile(source, "checker.py", "exec", dont_inherit=True), ns)
        check = ns.get("check")
        if not callable(check):
            record("checker", False, "the checker defines no check(answer) function")
            return
        verdict = check(answer if isinstance(answer, str) else "")
    except Exception as e:
        record("checker", False, describe(e, "checker.py"), failure_kind(e))
        return
    # `is True`: a truthy non-bool is a checker bug, not a pass.
    record("checker", verdict is True, "" if verdict is True else f"check(answer) returned {verdict!r}")


def run_tests(rpc: Rpc, source: str, star: str | None, record) -> None:
    import ast
    import types

    filename = "tests.py"
    ns: dict = {"__name__": "tests", "__file__": filename}
    remember_source(filename, source)
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError) as e:
        record("tests", False, f"the tests do not compile: {e}", "failed")
        return
    if star:
        # The tests may call the candidate's functions by bare name.
        try:
            names = rpc.ask(op="dir", h=rpc.ask(op="import", module=star)._h)
        except Exception as e:
            record(f"import {star}", False, describe(e, ""), failure_kind(e))
            return
        if type(names) is dict:
            ns.update({k: v for k, v in names.items() if type(k) is str})
    top_asserts = any(isinstance(node, ast.Assert) for node in tree.body)
    try:
        exec(code, ns)
    except Exception as e:
        record("tests (module level)", False, describe(e, filename), failure_kind(e))
        return
    if top_asserts:
        record("tests (module level asserts)", True)
    funcs = sorted(
        (
            f
            for n, f in ns.items()
            if n.startswith("test") and isinstance(f, types.FunctionType) and f.__code__.co_filename == filename
        ),
        key=lambda f: f.__code__.co_firstlineno,
    )
    for func in funcs:
        try:
            func()
        except Exception as e:
            record(func.__name__, False, describe(e, filename), failure_kind(e))
        else:
            record(func.__name__, True)
    if not funcs and not top_asserts:
        record("tests", False, "the tests define no test_* function and no assert")


def run_doctests(rpc: Rpc, module: str, source: str, record) -> None:
    """Doctests of a candidate module, executed here against the module's RPC proxy."""
    import ast
    import io

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return  # compile already reported it
    import doctest  # here, not at the top: only doctest jobs pay for importing it

    parser = doctest.DocTestParser()
    found = []
    for node in [tree, *ast.walk(tree)]:
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and ">>>" in doc:
                name = module if isinstance(node, ast.Module) else f"{module}.{node.name}"
                found.append((name, doc, getattr(node, "lineno", 0)))
    if not found:
        return
    try:
        remote = rpc.ask(op="import", module=module)
        names = rpc.ask(op="dir", h=remote._h)
    except Exception as e:
        record(f"doctest {module}", False, describe(e, ""), failure_kind(e))
        return
    seen = set()
    for name, doc, lineno in found:
        if (name, lineno) in seen:
            continue
        seen.add((name, lineno))
        globs = dict(names) if type(names) is dict else {}
        globs["__name__"] = module
        out = io.StringIO()
        runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        try:
            test = parser.get_doctest(doc, globs, name, f"{module}.py", lineno)
            res = runner.run(test, out=out.write, clear_globs=True)
        except Exception as e:
            record(f"doctest {name}", False, describe(e, ""), failure_kind(e))
            continue
        text = "\n".join(ln for ln in out.getvalue().splitlines() if not ln.startswith("*****"))
        kind = "memory" if "MemoryError" in text else "died" if "CandidateDied" in text else "failed"
        record(f"doctest {name}", res.failed == 0, text[-1000:], kind)
