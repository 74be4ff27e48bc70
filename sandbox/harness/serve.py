"""The harness role: say hello (protocol, digest of its own files), then read jobs on stdin and answer
each with one result line that carries the job's nonce."""

from __future__ import annotations

import json
import os
import sys

from .children import Launcher
from .common import PROTOCOL, make_undumpable, own_digest
from .jobs import private_dir, remove_tree, run_job


def harness_main(args) -> int:
    make_undumpable()
    digest = own_digest()
    launcher = Launcher()
    # Started first, so its interpreter starts while this one says hello and reads the job: a
    # one-shot program then waits 3-8 ms less (interleaved pairs), and a job that needs no child
    # pays only the posix_spawn here.
    launcher.start()
    out = sys.stdout
    out.write(
        json.dumps(
            {"hello": "selfloop-harness", "protocol": PROTOCOL, "sha256": digest, "python": sys.version.split()[0]}
        )
        + "\n"
    )
    out.flush()
    os.makedirs(args.scratch, exist_ok=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
            nonce = job["nonce"]
            job["limits"]["nofile"]  # fail early on a malformed job
        except (ValueError, KeyError, TypeError) as e:
            out.write(json.dumps({"nonce": None, "status": "sandbox_error", "reason": f"malformed job: {e}"}) + "\n")
            out.flush()
            continue
        scratch = private_dir(args.scratch, "job-")
        try:
            result = run_job(job, scratch, args.pidns, launcher)
            result["nonce"] = nonce
            out.write(json.dumps(result) + "\n")
            out.flush()
        finally:
            remove_tree(scratch)  # once the verdict is out: nobody waits for it
        if not args.serve:
            break
    launcher.stop()
    return 0
