"""selfloop's benchmarks: figures for every hot path, each against a baseline measured in the same run.

``python -m bench [--quick] [--only NAME ...]`` runs them all (``make bench``);
``--quick`` shrinks every size for a CI smoke run. Each benchmark is also a
module of its own (``python -m bench.train_speed``) and writes
``bench/results/<name>.json``; ``python -m bench.summary`` renders the figures
against their targets as the Markdown table in BENCHMARKS.md.

Benchmarks never assert timings; the smoke test only checks that figures exist.
"""
