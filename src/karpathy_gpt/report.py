"""``karpathy-gpt eval --report DIR``: report.md and PNG plots of what eval measured.

- retrieval: every measured row (served, cross-validated, baselines) with 95% intervals;
- answers: evidence held, refusals, and the answers of the questions missed, beside the
  reference answer when the label has one;
- the refusal curve (off-topic refused against on-topic wrongly refused) with the chosen point;
- provenance: the commit, the corpus, the models that produced the figures.

Each file is written to a temporary name and renamed, so a failed write leaves no half report.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .config import REPO_ROOT, Settings
from .evaluation.metrics import summary
from .evaluation.show import METRICS, answers, curve, rows_of


def write(measured, out_dir: Path, settings: Settings) -> Path:
    """``report.md`` and its plots in ``out_dir``; returns the report's path."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    name, main, main_off = measured.main
    _plot_retrieval(plt, measured, out_dir / "retrieval.png")
    if main_off:
        _plot_curve(plt, main, main_off, out_dir / "refusal.png")
    a = answers(main, main_off)
    lines = [
        "# Karpathy-GPT evaluation report",
        "",
        "Produced by `karpathy-gpt eval --report`.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {_cell(v)} |" for k, v in provenance(settings, measured).items()),
        "",
        "## Retrieval",
        "",
        "A hit is the evidence regex read within the budget (2,400 or 4,500 characters of the "
        "ranked passages) in a passage of an accepted lecture; hit@1 and MRR@10 judge whole "
        "passages. Mean [95% bootstrap interval].",
        "",
        "![retrieval](retrieval.png)",
        "",
        "| | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for row, found in rows_of(measured).items():
        s = summary(found)
        lines.append(f"| {row} | " + " | ".join(s[m].percent() for m in METRICS) + " |")
    lines += [
        "",
        f"## Answers ({name}, {measured.main_answerer})",
        "",
        f"- evidence in the first 800 characters: {a['evidence_held'].percent()}",
        f"- on-topic questions refused: {a['on_topic_refused'].percent()}",
    ]
    if a["off_topic_refused"] is not None:
        lines += [
            f"- off-topic questions refused: {a['off_topic_refused'].percent()}",
            "",
            "![refusal curve](refusal.png)",
        ]
    if measured.label_problems:
        lines += [
            "",
            "### Labels no passage can satisfy",
            "",
            "| question | lecture | why |",
            "|---|---|---|",
            *(
                f"| {_cell(p.question)} | {p.lecture} | {_cell(p.reason)} |"
                for p in measured.label_problems
            ),
        ]
    missed = [j for j in main if not j.holds]
    reference = {q.question: q.reference_answer for q in measured.labelled}
    lines += [
        "",
        f"### Answers that miss their evidence ({len(missed)})",
        "",
        "| type | question | answer | reference |",
        "|---|---|---|---|",
        *(
            f"| {j.type} | {_cell(j.question)} | {_cell(j.answer)} | "
            f"{_cell(reference.get(j.question, ''))} |"
            for j in missed
        ),
        "",
        "### Off-topic questions answered anyway",
        "",
        "| type | question | answer |",
        "|---|---|---|",
        *(
            f"| {j.type} | {_cell(j.question)} | {_cell(j.answer)} |"
            for j in main_off
            if not j.refused
        ),
        "",
    ]
    path = out_dir / "report.md"
    _atomic_text(path, "\n".join(lines))
    return path


def provenance(settings: Settings, measured) -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            result = subprocess.run(
                ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown (not a git checkout)"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " + uncommitted changes"
    return {
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "corpus": str(settings.resolved_corpus_dir()),
        "questions": f"{len(measured.labelled)} labelled, {len(measured.offtopic)} off-topic",
        "embedding model": measured.model,
        "answerer": measured.answerer,
        "passages per answer": str(settings.default_k),
    }


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError(
            "the report's plots need matplotlib: pip install 'karpathy-gpt[report]'"
        ) from exc
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


def _plot_retrieval(plt, measured, path: Path) -> None:
    rows = rows_of(measured)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(13, 3.8), sharey=True)
    for ax, metric in zip(axes, METRICS, strict=True):
        estimates = [summary(found)[metric] for found in rows.values()]
        means = [e.mean for e in estimates]
        errors = [[e.mean - e.low for e in estimates], [e.high - e.mean for e in estimates]]
        ax.bar(range(len(rows)), means, yerr=errors, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(rows)), list(rows), rotation=20, fontsize=8)
        ax.set_title(metric)
        ax.set_ylim(0, 1.05)
    fig.tight_layout()
    _save(plt, fig, path)


def _plot_curve(plt, on, off, path: Path) -> None:
    points = curve(on, off, points=40)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([p["on_topic_refused"] for p in points], [p["off_topic_refused"] for p in points], ".-")
    chosen = (sum(j.refused for j in on) / len(on), sum(j.refused for j in off) / len(off))
    ax.plot(*chosen, "o", color="tab:red", label="chosen")
    ax.set_xlabel("on-topic questions wrongly refused")
    ax.set_ylabel("off-topic questions refused")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save(plt, fig, path)
