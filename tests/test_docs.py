"""The documentation's own rules: the configuration page is the Settings class, the README fits
on a screen or two and links every page, and BENCHMARKS.md is the one home of the figures."""

from __future__ import annotations

import re

from support.paths import REPO

from karpathy_gpt.config import Settings
from karpathy_gpt.config_doc import render

PAGES = [
    "configuration",
    "api",
    "answerers",
    "postgres",
    "deployment",
    "corpus",
    "evaluation",
    "clients",
]


def test_the_configuration_page_is_written_from_the_settings():
    page = (REPO / "docs" / "configuration.md").read_text()
    assert page == render(), (
        "docs/configuration.md is stale: python -m karpathy_gpt.config_doc > docs/configuration.md"
    )
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no description for the page"


def test_the_readme_is_short_and_links_every_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert "make serve" in first_block and "make test" in first_block
    assert readme.count("curl ") >= 3
    for page in PAGES:
        assert f"docs/{page}.md" in readme, page
        assert (REPO / "docs" / f"{page}.md").is_file(), page


def test_benchmarks_is_one_page_and_links_resolve():
    assert len((REPO / "BENCHMARKS.md").read_text().splitlines()) <= 400
    for doc in [REPO / "README.md", REPO / "BENCHMARKS.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+\.md)", doc.read_text()):
            assert (doc.parent / target).is_file(), f"{doc.name} links to missing {target}"
