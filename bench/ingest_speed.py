"""Ingest throughput: ``Ingestor.scan`` (decode, normalize, filters, exact and near dedup,
one transaction per file) against reading and hashing the same files.

Corpora: synthetic prose files (distinct paragraphs that pass the filters, so
every document goes through the whole pipeline including MinHash) at 1x, 4x
and 16x size, each ingested into a fresh store, and the shipped starter corpus
(mixed .txt .md .py .jsonl). The baseline, in the same run, reads every file and
computes its sha256 (page cache warm for both: the baseline runs first).

The 16x corpus is ingested twice: with the shipped settings (``[ingest] workers
= 2``: two processes decode, filter and MinHash while the scanning process
stores) and with ``workers = 1`` (everything in the scanning process), so what
the workers gain (or cost) is an in-run ratio too. CPU seconds of the scanning
process are recorded next to the wall time: with workers, they bound the rate
the scanning process alone could sustain on idle cores.

The field's own tool on the same 16x files, in the same run: datatrove (the ``bench`` extra, pinned) runs its
equivalent steps, a reader (one document per file), the Gopher quality filter (its default English word
tokenizer, spaCy) and MinHash signatures (128 permutations as here: 16 buckets x 8, 5-gram shingles, written to
disk as datatrove does), in one task against selfloop's ``workers = 1`` scan. The first, tiny run loads spaCy
(not timed). datatrove's dedup buckets and clustering (which decide the duplicates) and selfloop's storing and
exact dedup are not in the comparison's datatrove side, so the ratio favours datatrove.

Cost growth: ingest seconds at the three sizes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Recorder, growth, quick_flag, say
from bench.project import write_corpus
from selfloop.testing import make_project

NAME = "ingest"


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def read_and_hash(folder: Path) -> dict[str, Any]:
    files = files_of(folder)
    start = time.perf_counter()
    size = 0
    for p in files:
        data = p.read_bytes()
        hashlib.sha256(data).hexdigest()
        size += len(data)
    seconds = time.perf_counter() - start
    return {
        "files": len(files),
        "mb": round(size / 1e6, 3),
        "seconds": round(seconds, 4),
        "mb_per_s": round(size / 1e6 / seconds, 1),
    }


def ingest(root: Path, corpus: Path | None, **settings: Any) -> dict[str, Any]:
    """A fresh project whose orig is ``corpus`` (or the starter corpus), scanned once.

    ``settings`` override [ingest].
    """
    from selfloop.ingest.ingestor import Ingestor
    from selfloop.store import Store

    _, cfg, paths = make_project(root, starter=corpus is None)
    ingest_cfg = cfg.ingest.model_copy(update=settings)
    if corpus is not None:
        shutil.rmtree(paths.orig)
        shutil.copytree(corpus, paths.orig)
    size = sum(p.stat().st_size for p in files_of(paths.orig))
    read_and_hash(paths.orig)  # warm the page cache for the copy that is ingested
    baseline = read_and_hash(paths.orig)
    with Store.open(paths.db) as store:
        ingestor = Ingestor(ingest_cfg, cfg.watch, paths, store)
        start, cpu = time.perf_counter(), time.process_time()
        report = ingestor.scan()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "workers": ingest_cfg.workers,
        "parallel_min_mb": ingest_cfg.parallel_min_mb,  # workers start only after this much has been read
        "mb": round(size / 1e6, 3),
        "seconds": round(seconds, 3),
        "mb_per_s": round(size / 1e6 / seconds, 2),
        "scanning_process_cpu_s_per_mb": round(cpu / (size / 1e6), 4),
        "documents": report.accepted,
        "dropped": dict(report.dropped),
        "read_and_hash": baseline,
        "ratio_vs_read_and_hash": round((size / seconds) / (baseline["mb"] * 1e6 / baseline["seconds"]), 4),
    }


def datatrove_steps(corpus: Path, workdir: Path) -> dict[str, Any] | None:
    """datatrove's reader, Gopher filter and MinHash signatures over ``corpus``, one task; None without the bench
    extra (datatrove is a dependency, but its Gopher filter's English words need spaCy)."""
    if importlib.util.find_spec("spacy") is None:
        return None
    try:
        from datatrove.executor import LocalPipelineExecutor
        from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
        from datatrove.pipeline.filters import GopherQualityFilter
        from datatrove.pipeline.readers.base import BaseDiskReader
    except ImportError:
        return None
    import datatrove.utils.hashes.xxhash as datatrove_xxhash
    import xxhash

    # datatrove 0.10.1 hashes shingles as str, which xxhash >= 4 refuses: encoded first, as xxhash 3 did itself.
    datatrove_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)

    class TextReader(BaseDiskReader):
        """One document per text file: datatrove ships readers for JSONL, Parquet, CSV and WARC, not plain text."""

        name = "text files"

        def read_file(self, filepath: str):
            with self.data_folder.open(filepath, "r", encoding="utf-8") as f:
                document = self.get_document_from_dict({"text": f.read(), "id": filepath}, filepath, 0)
            if document:
                yield document

    def once(folder: Path, out: Path) -> float:
        pipeline = [
            TextReader(str(folder), glob_pattern="*.txt"),
            GopherQualityFilter(),
            MinhashDedupSignature(str(out / "signatures"), config=MinhashConfig(n_grams=5, num_buckets=16)),
        ]
        executor = LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(out / "logs"))
        start = time.perf_counter()
        executor.run()
        return time.perf_counter() - start

    warm = workdir / "datatrove-warm"
    warm.mkdir()
    shutil.copy(files_of(corpus)[0], warm)
    once(warm, workdir / "datatrove-warm-out")  # loads spaCy's tokenizer
    seconds = once(corpus, workdir / "datatrove-out")
    size = sum(p.stat().st_size for p in files_of(corpus))
    return {"mb": round(size / 1e6, 3), "seconds": round(seconds, 3), "mb_per_s": round(size / 1e6 / seconds, 2)}


def run(quick: bool, workdir: Path) -> Recorder:
    rec = Recorder(NAME, quick, "python -m bench.ingest_speed" + (" --quick" if quick else ""))
    files, chars = (4, 16_000) if quick else (40, 50_000)  # 1x: 64 KB quick, 2 MB full
    sizes = [1, 4, 16]
    runs = {}
    for m in sizes:
        corpus = workdir / f"corpus{m}x"
        write_corpus(corpus, files * m, chars, seed=m)
        runs[f"{m}x"] = r = ingest(workdir / f"proj{m}x", corpus)
        say(
            f"[ingest] {m}x: {r['mb']} MB in {r['seconds']} s = {r['mb_per_s']} MB/s "
            f"({r['documents']} documents, workers = {r['workers']}); read+hash {r['read_and_hash']['mb_per_s']} MB/s"
        )
        if m == sizes[-1]:
            serial = ingest(workdir / f"proj{m}x-serial", corpus, workers=1)
            say(
                f"[ingest] {m}x in the scanning process alone (workers = 1): {serial['mb_per_s']} MB/s "
                f"({serial['scanning_process_cpu_s_per_mb']} CPU s/MB; "
                f"with workers {r['scanning_process_cpu_s_per_mb']})"
            )
            datatrove = datatrove_steps(corpus, workdir)
            if datatrove is None:
                say("[ingest] datatrove is not installed (pip install -e '.[bench]'): no comparison")
            else:
                datatrove["selfloop_serial_vs_datatrove"] = round(serial["mb_per_s"] / datatrove["mb_per_s"], 3)
                say(
                    f"[ingest] {m}x through datatrove (reader, Gopher filter, MinHash signatures; one task): "
                    f"{datatrove['mb_per_s']} MB/s; selfloop workers = 1 / datatrove = "
                    f"{datatrove['selfloop_serial_vs_datatrove']}"
                )
        shutil.rmtree(corpus)
    starter = None if quick else ingest(workdir / "starter", None)
    if starter:
        say(
            f"[ingest] starter corpus: {starter['mb']} MB in {starter['seconds']} "
            f"s = {starter['mb_per_s']} MB/s ({starter['documents']} documents)"
        )
    scaling = growth(sizes, [runs[f"{m}x"]["seconds"] for m in sizes])
    say(f"[ingest] cost at 1x/4x/16x -> {scaling['growth']} (exponent {scaling['exponent']})")
    largest = runs["16x"]
    rec.figures = {
        "synthetic": runs,
        "starter_corpus": starter,
        "mb_per_s": largest["mb_per_s"],
        "read_and_hash_mb_per_s": largest["read_and_hash"]["mb_per_s"],
        "serial_16x": serial,
        "shipped_vs_serial": round(largest["mb_per_s"] / serial["mb_per_s"], 3),
        "datatrove_16x": datatrove,
        "target_mb_per_s": 20.0,
        "scaling_corpus": scaling,
    }
    return rec


def main(argv: list[str] | None = None) -> int:
    quick = quick_flag(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        rec = run(quick, Path(tmp))
    say(f"[ingest] wrote {rec.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
