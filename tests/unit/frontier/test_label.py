"""Label selection: the model's answers are filtered by model-internal checks; the answer key only audits."""

import random

from selfloop.frontier.families import Addition, Reverse
from selfloop.frontier.label import SelfFilters, label


class Model:
    """A stand-in model: answers every addition prompt as a + b + bias (a consistent, systematic error)."""

    def __init__(self, bias: int = 0):
        self.fam, self.bias = Addition(), bias
        self.asked: list[str] = []

    def answer(self, prompt: str) -> str:
        left, right = prompt.rstrip("=").split("+")
        a, b = int(left[::-1]), int(right[::-1])
        return self.fam.solve((a + self.bias, b))

    def greedy(self, prompts):
        self.asked += prompts
        return [self.answer(p) for p in prompts]

    def sample(self, prompts, n, temperature, seed):
        return [[self.answer(p)] * n for p in prompts]


def problems(level, n=40, seed=0):
    rng = random.Random(seed)
    return [Addition().sample(level, rng) for _ in range(n)]


def test_a_right_model_keeps_everything_and_the_audit_says_so():
    kept, stats = label(
        Addition(), problems(6), "self", Model(), filters=SelfFilters(), trusted=4, rng=random.Random(0)
    )
    assert stats.kept == stats.candidates == 40
    assert stats.audited_accuracy == 1.0
    assert all(k.source == "self" and k.audit_correct for k in kept)


def test_self_labels_are_the_model_answers_even_where_the_checker_disagrees():
    """Inside the trusted range (no split check) a consistent error passes the shift check: the label is kept
    although the answer key says it is wrong. The key records that; it does not select."""
    model = Model(bias=1)
    kept, stats = label(Addition(), problems(3), "self", model, filters=SelfFilters(), trusted=4, rng=random.Random(0))
    assert stats.kept > 0
    assert all(not k.audit_correct for k in kept)
    assert stats.audited_accuracy == 0.0
    assert all(k.answer == model.answer(k.prompt) for k in kept)


def test_the_split_check_drops_a_consistent_error_past_the_trusted_range():
    _, stats = label(
        Addition(), problems(7), "self", Model(bias=1), filters=SelfFilters(), trusted=4, rng=random.Random(0)
    )
    assert stats.kept == 0
    assert stats.dropped["check:split"] == 40


def test_unfiltered_keeps_what_parses():
    filters = SelfFilters(checks=False)
    _, stats = label(Addition(), problems(7), "self", Model(bias=1), filters=filters, trusted=4, rng=random.Random(0))
    assert stats.kept == 40 and stats.audited_accuracy == 0.0


def test_malformed_answers_are_dropped_for_format():
    class Short(Model):
        def answer(self, prompt):
            return super().answer(prompt)[:-1]

    _, stats = label(Addition(), problems(5), "self", Short(), filters=SelfFilters(), trusted=4, rng=random.Random(0))
    assert stats.kept == 0 and stats.dropped == {"format": 40}


def test_oracle_labels_come_from_the_key_whatever_the_model_says():
    kept, stats = label(
        Addition(), problems(7), "oracle", Model(bias=3), filters=SelfFilters(), trusted=4, rng=random.Random(0)
    )
    assert stats.kept == 40 and all(k.audit_correct and k.source == "oracle" for k in kept)
    assert stats.greedy_correct == 0  # the model itself got none right


def test_vote_and_previous_generation_filters():
    class Noisy(Model):
        def sample(self, prompts, n, temperature, seed):
            return [[self.answer(p)] + ["0" * len(self.answer(p))] * (n - 1) for p in prompts]

    filters = SelfFilters(checks=False, samples=4, vote_threshold=0.7)
    _, stats = label(Addition(), problems(5), "self", Noisy(), filters=filters, trusted=4, rng=random.Random(0))
    assert stats.kept == 0 and stats.dropped == {"vote": 40}
    filters = SelfFilters(checks=False, agree_previous=True)
    _, stats = label(
        Addition(),
        problems(5),
        "self",
        Model(),
        filters=filters,
        trusted=4,
        rng=random.Random(0),
        previous=Model(bias=1),
    )
    assert stats.kept == 0 and stats.dropped == {"previous": 40}


def test_reverse_family_labels_through_the_same_path():
    class Reverser:
        def greedy(self, prompts):
            return [p.rstrip("=")[::-1] for p in prompts]

    rng = random.Random(0)
    probs = [Reverse().sample(7, rng) for _ in range(20)]
    kept, stats = label(Reverse(), probs, "self", Reverser(), filters=SelfFilters(), trusted=4, rng=rng)
    assert stats.kept == 20 and stats.audited_accuracy == 1.0
