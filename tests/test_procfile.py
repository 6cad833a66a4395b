"""The Procfile's web line, run as a platform runs it (a shell, PORT set), answers /healthz."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest
from support.paths import REPO, VENV_BIN
from support.servers import base_env, free_port

pytestmark = pytest.mark.slow


def web_command() -> str:
    lines = (REPO / "Procfile").read_text().splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("web:"))


def test_procfile_web_line_serves_healthz(index_dir, output_dir):
    command = web_command()
    assert command == "uvicorn karpathy_app:app --host 0.0.0.0 --port $PORT"
    port = free_port()
    env = base_env(
        PORT=str(port),
        KGPT_INDEX_DIR=str(index_dir),
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    with open(output_dir / "procfile.log", "w") as log:
        # The line as written: the shell expands $PORT, as Heroku-style platforms do.
        proc = subprocess.Popen(
            ["sh", "-c", command],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the shell and its uvicorn, stopped together below
        )
        try:
            deadline = time.monotonic() + 300
            health = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            assert health is not None, (output_dir / "procfile.log").read_text()[-2000:]
            assert health.status_code == 200
            assert health.json()["status"] == "ok" and health.json()["chunks"] > 1000
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
