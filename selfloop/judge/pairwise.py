"""``pairwise``: a capable local model compares the rewrite B with its original A, in both orders.

For when a real judge model runs on this machine behind an OpenAI-compatible chat endpoint (``judge.external_url``:
vLLM, llama.cpp's server, Ollama, ...). LLM judges favour whichever answer comes first (or second), so each pair is
asked twice with the two positions swapped; B wins only if it wins both times, and a tie, a split decision or an
answer that is neither rejects. The prompts are ``judge.pairwise_system`` and ``judge.pairwise_prompt``.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence

from selfloop.judge.base import Candidate, Judge, JudgeContext, JudgeVerdict, accept, reject
from selfloop.judge.reference import check_local_url

log = logging.getLogger(__name__)


def parse_choice(answer: str) -> str:
    """ "1", "2" or "tie" from the model's answer (its first token that says one of them); "?" otherwise."""
    for word in answer.replace(".", " ").replace(",", " ").lower().split():
        if word in ("1", "2", "tie"):
            return word
        if word in ("response", "answer", "continuation"):
            continue
        break
    return "?"


class PairwiseJudge(Judge):
    name = "pairwise"

    def __init__(self, context: JudgeContext, timeout: float = 120.0):
        super().__init__(context)
        check_local_url(context.config.external_url)
        self.timeout = timeout

    def ask(self, prompt: str, first: str, second: str) -> str:
        cfg = self.context.config
        question = cfg.pairwise_prompt.format(prompt=prompt, first=first, second=second)
        messages = [{"role": "system", "content": cfg.pairwise_system}] if cfg.pairwise_system else []
        messages.append({"role": "user", "content": question})
        body = {"model": cfg.pairwise_model, "messages": messages, "max_tokens": 8, "temperature": 0}
        req = urllib.request.Request(
            cfg.external_url.rstrip("/") + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                answer = json.loads(resp.read())["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
            log.warning("pairwise judge %s: %s", cfg.external_url, e)
            return "unavailable"
        return parse_choice(str(answer))

    def judge(self, candidate: Candidate) -> JudgeVerdict:
        if candidate.source is None:
            return accept(self.name, "no original to compare")
        prompt = str(candidate.metadata.get("prompt", ""))
        b = str(candidate.metadata.get("completion", candidate.content))
        a_first = self.ask(prompt, candidate.source, b)  # B is response 2
        b_first = self.ask(prompt, b, candidate.source)  # B is response 1
        detail = {"a_first": a_first, "b_first": b_first}
        if "unavailable" in (a_first, b_first):
            return reject(self.name, "judge_unavailable: the pairwise judge model did not answer", **detail)
        wins = (a_first == "2") + (b_first == "1")
        losses = (a_first == "1") + (b_first == "2")
        score = float(wins - losses) / 2
        if wins == 2:
            return accept(self.name, "B beats A in both orders", score=score, **detail)
        if wins == 1 and losses == 1:
            why = "lost_pairwise: a split decision (the judge favoured one position)"
        elif losses:
            why = f"lost_pairwise: A preferred in {losses} of 2 orders"
        else:
            why = "lost_pairwise: a tie or no clear answer"
        return reject(self.name, why, score=score, **detail)

    def judge_batch(self, candidates: Sequence[Candidate]) -> list[JudgeVerdict]:
        return [self.judge(c) for c in candidates]
