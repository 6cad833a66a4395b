"""A short soak (benchmarks/soak.py's load, bounded): 16 clients for 15 s, no 5xx, every stream
ends with ``end``, every bad request gets its 422. The two-minute, 32-client run and its figures
are in BENCHMARKS.md (Reliability)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import pytest
from support.paths import REPO

pytestmark = pytest.mark.slow


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", REPO / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_short_soak_has_no_server_errors_and_every_stream_ends(server):
    soak = load_soak()
    result = asyncio.run(soak.run_load(server.url, seconds=15, clients=16, pid=server.proc.pid))
    print(soak.report(result, {"docs": [], "stream": []}, {"docs": [], "stream": []}, 15, 16))
    assert len(result.samples) > 100
    assert {s.kind for s in result.samples} == {"docs", "stream", "bad"}
    assert result.server_errors() == 0
    assert not result.errors, result.errors
    assert not result.incomplete(), result.incomplete()[:5]
    assert len(result.rss_mb) >= 5
