"""The server role, on the candidate's side: imports the candidate's modules and evaluates the tester's
operations on their objects. It runs candidate code, so nothing it answers is trusted."""

from __future__ import annotations

import json
import os
import sys

from .common import forget_harness
from .wire import decode, encode


def server_main(rpc_in: int, rpc_out: int) -> int:
    """Import candidate modules on request and evaluate operations on their objects.

    This process runs candidate code, so nothing it says is trusted: it can only
    answer with values, which the tester decodes into plain built-in objects.
    """
    forget_harness()
    sys.path.insert(0, os.getcwd())
    sys.setrecursionlimit(10_000)
    reader = os.fdopen(rpc_in, "rb")
    writer = os.fdopen(rpc_out, "wb")
    handles: dict[int, object] = {}

    def obj(h):
        return handles[h] if type(h) is int else None

    def arg(v):
        return decode(v, lambda h, t, c: handles[h])

    ops = {
        "import": lambda r: __import__(r["module"], fromlist=["_"]),
        "dir": lambda r: {n: getattr(obj(r["h"]), n) for n in dir(obj(r["h"])) if not n.startswith("_")},
        "getattr": lambda r: getattr(obj(r["h"]), r["name"]),
        "call": lambda r: obj(r["h"])(*[arg(a) for a in r["args"]], **{k: arg(v) for k, v in r["kwargs"].items()}),
        "getitem": lambda r: obj(r["h"])[arg(r["key"])],
        "len": lambda r: len(obj(r["h"])),
        "iter": lambda r: list(obj(r["h"])),
        "contains": lambda r: arg(r["item"]) in obj(r["h"]),
        "bool": lambda r: bool(obj(r["h"])),
        "repr": lambda r: repr(obj(r["h"])),
        "str": lambda r: str(obj(r["h"])),
    }
    for line in reader:
        try:
            req = json.loads(line)
            value = ops[req["op"]](req)
            reply = {"ok": encode(value, handles)}
        except BaseException as e:  # the candidate's exceptions are answers, not crashes
            if isinstance(e, KeyboardInterrupt):
                raise
            reply = {"raise": {"type": type(e).__name__[:100], "message": str(e)[:2000]}}
        try:
            data = json.dumps(reply)
        except (ValueError, RecursionError, TypeError) as e:
            data = json.dumps({"raise": {"type": "TypeError", "message": f"unencodable reply: {e}"[:2000]}})
        writer.write(data.encode() + b"\n")
        writer.flush()
    return 0
