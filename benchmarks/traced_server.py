"""The server under tracemalloc, for ``benchmarks/soak.py --trace-memory``: where memory goes.

Runs ``karpathy_app:app`` in uvicorn with tracemalloc on (one frame per allocation: cheap enough
to run a soak, ~1.5x slower). Each SIGUSR1 takes a snapshot after a full garbage collection;
the first is the baseline, every later one writes to ``--report`` the source lines whose live
Python allocations grew most since the baseline, and the object types whose count grew most
(``gc.get_objects``). Python objects and numpy arrays (numpy reports its buffers to
tracemalloc) are traced; what C libraries allocate themselves (ONNX Runtime's arenas, the
tokenizer's buffers, glibc's per-thread arenas) is not, and shows only in the RSS soak.py
samples: that is how the two are told apart. Usage (soak.py does it):

    .venv/bin/python benchmarks/traced_server.py --report FILE --host 127.0.0.1 --port 8047
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import uvicorn

REPO = Path(__file__).resolve().parents[1]
TOP = 25


class Tracer:
    def __init__(self, report: Path):
        self.report = report
        self.baseline: tracemalloc.Snapshot | None = None
        self.objects: Counter[str] = Counter()

    def on_signal(self, signum: int, frame: object) -> None:
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        objects = Counter(type(o).__qualname__ for o in gc.get_objects())
        if self.baseline is None:
            self.baseline, self.objects = snapshot, objects
            self.report.write_text("baseline taken\n")
            return
        lines = [f"Python allocations, growth since the baseline (top {TOP} source lines):"]
        stats = snapshot.compare_to(self.baseline, "lineno")
        traced = sum(s.size for s in snapshot.statistics("filename"))
        base = sum(s.size for s in self.baseline.statistics("filename"))
        lines.append(f"all traced: {base / 2**20:.1f} MB -> {traced / 2**20:.1f} MB")
        for stat in stats[:TOP]:
            where = stat.traceback[0]
            name = where.filename.replace(str(REPO) + "/", "").split("site-packages/")[-1]
            lines.append(
                f"  {stat.size_diff / 1024:+9.1f} KiB ({stat.count_diff:+d} blocks) "
                f"{name}:{where.lineno}"
            )
        grown = Counter(objects)
        grown.subtract(self.objects)
        lines.append("objects whose count grew most (gc-tracked):")
        for name, diff in grown.most_common(12):
            lines.append(f"  {diff:+7d} {name} (now {objects[name]})")
        self.report.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8047)
    args = parser.parse_args()
    tracemalloc.start(1)
    tracer = Tracer(args.report)
    signal.signal(signal.SIGUSR1, tracer.on_signal)
    sys.path.insert(0, str(REPO))
    uvicorn.run("karpathy_app:app", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
