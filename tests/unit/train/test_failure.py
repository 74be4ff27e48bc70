"""A failed training child is reported by its reason, not by the tail of a traceback."""

from selfloop.train.launch import failure_reason
from selfloop.train.rundir import FAILURE_PREFIX


def test_failure_reason_prefers_the_childs_own_line_then_the_exception(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "{'loss': 2.1}\nTraceback (most recent call last):\n  File \"t.py\", line 1\n"
        f"OSError: [Errno 28] No space left on device\n{FAILURE_PREFIX}No space left on device (/r/ck)\n"
        "selfloop.train: examples by kind: text 3 from 1 documents\n"  # an informational line, later: not the reason
    )
    assert failure_reason(log) == "No space left on device (/r/ck)"
    log.write_text(
        "selfloop.train: examples by kind: text 3 from 1 documents\n"
        'Traceback (most recent call last):\n  File "t.py"\n    save()\n'
        "torch.OutOfMemoryError: CUDA out of memory\n[rank0]: more noise\n"
    )
    assert failure_reason(log) == "torch.OutOfMemoryError: CUDA out of memory"
    log.write_text("one\ntwo\nthree\nfour\n")
    assert failure_reason(log) == "two | three | four"
    log.write_text("")
    assert failure_reason(log) == "no output"
