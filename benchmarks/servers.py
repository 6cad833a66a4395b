"""Starting the servers a benchmark measures: uvicorn on a free loopback port, ready when its
health path answers 200 (and, with workers, once every worker has started)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    url: str
    start_s: float  # from the command to its first 200

    def rss_mb(self) -> tuple[float, float]:
        """Resident and proportional set size of the server and its workers, in MiB."""
        import psutil

        procs = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(True)]
        rss = sum(p.memory_info().rss for p in procs) / 2**20
        pss = sum(p.memory_full_info().pss for p in procs) / 2**20
        return rss, pss

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start(
    name: str,
    args: list[str],
    env: dict,
    log: Path,
    ready_path: str = "/healthz",
    workers: int = 1,
    port: int | None = None,
    timeout: float = 900,
    program: list[str] | None = None,
) -> Server:
    """``uvicorn *args`` (or ``program *args``) on 127.0.0.1, its output in ``log``; returns
    once it answers."""
    port = port or free_port()
    program = program or [str(VENV_BIN / "uvicorn")]
    cmd = [*program, *args, "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-3000:]}")
        if log.read_text().count("Application startup complete") >= workers:
            try:
                if httpx.get(url + ready_path, timeout=2).status_code == 200:
                    return Server(name, proc, url, time.monotonic() - started)
            except httpx.HTTPError:
                pass
        time.sleep(0.02)
    proc.kill()
    raise TimeoutError(f"{name} not ready in {timeout:.0f} s: {log.read_text()[-3000:]}")


def percentile_ms(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (seconds), nearest rank, in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * 1000
