"""Reading a test database's state directly."""

from __future__ import annotations

import psycopg


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM kgpt_versions ORDER BY id")]
