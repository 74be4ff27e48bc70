"""selfloop sandbox harness: the program that runs INSIDE a sandbox. Standard library only, in real files.

It reads jobs as JSON lines on stdin and writes one JSON result line per job on
stdout. Its stdout is the result channel; no child ever inherits it. A job holds
candidate files, an optional entry program, optional tests / doctests / a
``check(answer)`` checker / an expected answer, limits, and a per-job nonce.

Why the candidate cannot forge a pass:

* Candidate code only ever runs in child processes with their own session and
  rlimits; their stdout/stderr are pipes the harness reads (capped), their stdin
  is the job's stdin text, never the job itself. They are forked from a
  *launcher* (launcher.py), a pristine interpreter that never holds a
  job's expected answer, checker, tests or nonce, so there is nothing of the
  kind in a candidate's memory to find.
* The nonce arrives on the harness's stdin and lives only in this process's
  memory. This process and the tester make themselves non-dumpable
  (``prctl(PR_SET_DUMPABLE, 0)``), so same-uid code cannot ptrace them or open
  their ``/proc/<pid>/{mem,fd,environ}``. A result line without the nonce is
  rejected by the client; a line the candidate smuggles onto the channel some
  other way cannot carry it.
* Tests, doctests and checkers run in a separate *tester* process that never
  executes candidate code. Candidate modules are reached through RPC: a
  candidate-side server evaluates calls and returns a canonical encoding of
  plain values (None, bool, int, float, str, bytes, list, tuple, set, dict of
  exact built-in types); anything else comes back as an opaque handle whose
  ``==`` is identity. So an object whose ``__eq__`` is always true, or code that
  monkeypatches the checker, cannot make a check pass.
* The harness counts checks itself. Exiting early, crashing the server or
  killing the tester leaves checks failed or missing, never passed.

Roles (``--role``, cli.py): the default is the harness (serve.py, jobs.py, children.py);
``server`` is the candidate-side RPC server (server.py); ``tester`` runs the checks
(tester.py); the values between them are encoded by wire.py. Candidate files are compiled in a
limited child before any of them runs. The harness does not judge quality or decide acceptance:
it reports facts, and the client outside the sandbox decides.

Modules: __main__ (entry: ``python -I -S harness/__main__.py``), cli (arguments, role dispatch),
common (protocol, paths, digest, hardening), serve (hello and the job loop), jobs (one job),
children (the launcher's handle, child processes, supervise), launcher (its own program),
server, tester, wire. The digest sent at hello covers every .py/.pyc file of this directory.
"""
