"""The stop callback decides on what every rank agreed, never on a signal that reached only this rank."""

from __future__ import annotations

import signal
from types import SimpleNamespace

from transformers import TrainerControl

from selfloop.train import callbacks


def test_a_sigterm_after_the_agreement_stops_at_the_next_step_not_this_one(monkeypatch):
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop = callbacks.StopCallback(max_minutes=60)
        args = SimpleNamespace(device="cpu")

        def other_ranks_saw_nothing(flags, device):
            # The flags were sent to the all-reduce; the SIGTERM lands on this rank while it runs.
            stop._on_sigterm(signal.SIGTERM, None)
            return [False, False]

        monkeypatch.setattr(callbacks, "agreed", other_ranks_saw_nothing)
        control = TrainerControl()
        stop.on_step_end(args, None, control)
        assert not control.should_training_stop and not control.should_save  # the other ranks go on: so must this one

        monkeypatch.setattr(callbacks, "agreed", lambda flags, device: flags)  # next step: everyone hears of it
        stop.on_step_end(args, None, control)
        assert control.should_training_stop and control.should_save and stop.terminated and not stop.out_of_time
    finally:
        signal.signal(signal.SIGTERM, previous)
