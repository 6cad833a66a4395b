"""Incremental ingest against a full rebuild of the same corpus, measured in one run.

Copies the first N+1 lectures of the real corpus to a temporary folder (never into the repo),
then times, each in-process with one loaded model:

1. a first build of lectures 1..N (empty cache),
2. adding lecture N+1 (incremental),
3. the peer: a forced full rebuild of the N+1 lectures (every text re-embedded),
4. changing one sentence of lecture 1 (incremental),
5. removing lecture N+1 (incremental).

Usage: .venv/bin/python benchmarks/incremental_ingest.py [--lectures 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console

from karpathy_gpt.config import Settings
from karpathy_gpt.embedding import Embedder
from karpathy_gpt.index.backend import IngestResult, ingest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "karpathy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lectures", type=int, default=2, help="N: lectures in the first build")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    entries = json.loads((CORPUS / "videos.json").read_text())[: args.lectures + 1]
    quiet = Console(stderr=True, quiet=True)
    embedder = Embedder()
    with tempfile.TemporaryDirectory(prefix="kgpt-incremental-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for entry in entries:
            shutil.copy(CORPUS / entry["transcript"], corpus / entry["transcript"])
        settings = Settings(corpus_dir=corpus, index_dir=Path(tmp) / "index")

        def manifest(n: int) -> None:
            (corpus / "videos.json").write_text(json.dumps(entries[:n]))

        def run(label: str, force: bool = False) -> tuple[str, float, IngestResult]:
            started = time.perf_counter()
            result = ingest(settings, embedder, force=force, console=quiet)
            return label, time.perf_counter() - started, result

        manifest(args.lectures)
        rows = [run(f"first build, {args.lectures} lectures")]
        manifest(args.lectures + 1)
        rows.append(run(f"add lecture {entries[-1]['id']}"))
        peer = run(f"full rebuild, {args.lectures + 1} lectures (--force, the peer)", force=True)
        rows.append(peer)
        first = corpus / entries[0]["transcript"]
        text = first.read_text()
        cut = text.index(". ", len(text) // 2) + 2
        first.write_text(text[:cut] + "This one sentence is new. " + text[cut:])
        rows.append(run(f"change one sentence of lecture {entries[0]['id']}"))
        manifest(args.lectures)
        rows.append(run(f"remove lecture {entries[-1]['id']}"))

    print("| step | chunks | texts embedded | vectors reused | seconds | vs full rebuild |")
    print("|---|---|---|---|---|---|")
    for label, seconds, result in rows:
        print(
            f"| {label} | {len(result.store)} | {result.embedded} | {result.reused} | "
            f"{seconds:.1f} | {seconds / peer[1]:.2f}x |"
        )


if __name__ == "__main__":
    main()
