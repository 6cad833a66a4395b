"""``karpathy-gpt eval --report DIR``: a Markdown report with PNG plots of how well it works.

- retrieval: hit@1, hit@3 and MRR@10 of dense, BM25 and hybrid ranking at a few chunk sizes,
  and the labels' accepted lectures that no passage can satisfy;
- answers: the share of the active answerer's answers that hold their evidence, and each
  test-set answer beside its reference with its ROUGE-L recall;
- provenance: the commit and the settings that produced the figures.

Indexes for the extra chunk sizes are built in memory (the served index is left alone); vectors
come from the embedding cache, so only chunk texts never seen before are embedded.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from .answer import Answerer, make_answerer
from .config import REPO_ROOT, Settings
from .corpus import read_corpus
from .embedding import Embedder
from .embedding_cache import EmbeddingCache
from .evaluation import (
    MODES,
    Labelled,
    LabelProblem,
    Scores,
    first_hit_rank,
    label_problems,
    ranked_chunks,
    rouge_l_recall,
    score_ranks,
)
from .index.backend import ingest
from .index.build import build_store
from .retrieval import Retriever

DEFAULT_CHUNK_SIZES = (400, 800, 1200)


@dataclass
class AnswerRow:
    question: str
    answer: str
    reference: str = ""
    evidence_held: bool | None = None  # labelled questions only
    recall: float | None = None  # test-set questions only


@dataclass
class Report:
    retrieval: dict[int, dict[str, Scores]]  # chunk size -> mode -> scores
    labelled: list[AnswerRow]
    test_set: list[AnswerRow]
    provenance: dict[str, str]
    answerer: str
    label_problems: list[LabelProblem]

    @property
    def evidence_share(self) -> float:
        held = [r.evidence_held for r in self.labelled]
        return sum(bool(h) for h in held) / max(len(held), 1)

    @property
    def mean_recall(self) -> float:
        return sum(r.recall or 0.0 for r in self.test_set) / max(len(self.test_set), 1)


def measure(
    settings: Settings,
    embedder: Embedder,
    questions: list[Labelled],
    test_set: list[tuple[str, str]],
    chunk_sizes: tuple[int, ...] = DEFAULT_CHUNK_SIZES,
    console: Console | None = None,
) -> Report:
    """Run every measurement of the report (no files written but the index and its cache)."""
    console = console or Console(stderr=True)
    served = ingest(settings, embedder, console=console)
    lectures = read_corpus(settings.resolved_corpus_dir()).lectures
    cache = EmbeddingCache.load(settings.index_dir, embedder.name)
    query_vectors: dict[str, object] = {}

    def embed(query: str):
        if query not in query_vectors:
            query_vectors[query] = embedder.embed_one(query)
        return query_vectors[query]

    retrieval: dict[int, dict[str, Scores]] = {}
    for size in sorted(set(chunk_sizes) | {settings.chunk_size}):
        if size == settings.chunk_size:
            store = served.store
        else:
            sized = settings.model_copy(
                update={"chunk_size": size, "chunk_overlap": min(settings.chunk_overlap, size // 4)}
            )
            console.print(f"report: building a {size}-character index in memory")
            name = f"{settings.resolved_corpus_dir().name} at {size} characters"
            store, _ = build_store(lectures, sized, embedder, cache, console=console, name=name)
        retrieval[size] = {
            mode: score_ranks(
                [
                    first_hit_rank(q, ranked_chunks(store, embed, q.question, mode))
                    for q in questions
                ]
            )
            for mode in MODES
        }
    cache.save()

    answerer = make_answerer(settings)
    retriever = Retriever(served.store, embedder)
    labelled_answers, test_answers = asyncio.run(
        _answer_all(
            answerer,
            retriever,
            settings.default_k,
            [q.question for q in questions],
            [q for q, _ in test_set],
        )
    )
    labelled = [
        AnswerRow(q.question, a, q.reference_answer, evidence_held=bool(q.evidence.search(a)))
        for q, a in zip(questions, labelled_answers, strict=True)
    ]
    tested = [
        AnswerRow(q, a, ref, recall=rouge_l_recall(a, ref))
        for (q, ref), a in zip(test_set, test_answers, strict=True)
    ]
    return Report(
        retrieval,
        labelled,
        tested,
        provenance(settings, served.key, answerer.name, embedder.name),
        answerer.name,
        label_problems(questions, served.store.chunks),
    )


async def _answer_all(
    answerer: Answerer, retriever: Retriever, k: int, *batches: list[str]
) -> list[list[str]]:
    out = []
    try:
        for batch in batches:
            answers = []
            for question in batch:
                retrieval = retriever.search(question, k)
                answers.append("".join([t async for t in answerer.stream(retrieval)]).strip())
            out.append(answers)
    finally:
        await answerer.aclose()
    return out


def provenance(settings: Settings, index_key: str, answerer: str, model: str) -> dict[str, str]:
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
        "index key": index_key,
        "embedding model": model,
        "chunk size / overlap (served)": f"{settings.chunk_size} / {settings.chunk_overlap}",
        "k (passages per answer)": str(settings.default_k),
        "answerer": answerer,
    }


# -- writing ----------------------------------------------------------------------------------


def write(report: Report, out_dir: Path, questions_path: Path, test_set_path: Path) -> Path:
    """``report.md`` and its plots in ``out_dir``; returns the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot_retrieval(report, out_dir / "retrieval.png")
    _plot_answers(report, out_dir / "answers.png")
    lines = [
        "# Karpathy-GPT evaluation report",
        "",
        "Produced by `karpathy-gpt eval --report`.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {_cell(v)} |" for k, v in report.provenance.items()),
        f"| questions | `{questions_path}` |",
        f"| test set | `{test_set_path}` |",
        "",
        "## Retrieval",
        "",
        "A hit is a passage from an accepted lecture that matches the question's evidence regex.",
        "",
        "![retrieval](retrieval.png)",
        "",
        "| chunk size | ranking | hit@1 | hit@3 | MRR@10 |",
        "|---|---|---|---|---|",
    ]
    for size, modes in report.retrieval.items():
        for mode, s in modes.items():
            lines.append(
                f"| {size} | {mode} | {s.hit_at_1}/{s.total} | {s.hit_at_3}/{s.total} | "
                f"{s.mrr_at_10:.3f} |"
            )
    lines += ["", "### Labels", ""]
    if report.label_problems:
        lines += [
            "These accepted lectures can never count as a hit, whatever the ranking:",
            "",
            "| question | lecture | why |",
            "|---|---|---|",
            *(
                f"| {_cell(p.question)} | {p.lecture} | {_cell(p.reason)} |"
                for p in report.label_problems
            ),
        ]
    else:
        lines.append("Every accepted lecture has a passage that matches its question's evidence.")
    held = sum(bool(r.evidence_held) for r in report.labelled)
    lines += [
        "",
        f"## Answers ({report.answerer})",
        "",
        f"**{held}/{len(report.labelled)}** answers to the labelled questions "
        f"({report.evidence_share:.0%}) hold their evidence. Mean ROUGE-L recall against the "
        f"test set's reference answers: **{report.mean_recall:.3f}**.",
        "",
        "![answers](answers.png)",
        "",
        "### Evidence in the answers",
        "",
        "| | question | answer |",
        "|---|---|---|",
        *(
            f"| {'✓' if r.evidence_held else '✗'} | {_cell(r.question)} | {_cell(r.answer)} |"
            for r in report.labelled
        ),
        "",
        "### Test set: answer beside reference",
        "",
        "| ROUGE-L recall | question | reference | answer |",
        "|---|---|---|---|",
        *(
            f"| {r.recall:.2f} | {_cell(r.question)} | {_cell(r.reference)} | {_cell(r.answer)} |"
            for r in report.test_set
        ),
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


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


def _plot_retrieval(report: Report, path: Path) -> None:
    plt = _pyplot()
    sizes = list(report.retrieval)
    metrics = [
        ("hit@1", lambda s: s.hit_at_1 / max(s.total, 1)),
        ("hit@3", lambda s: s.hit_at_3 / max(s.total, 1)),
        ("MRR@10", lambda s: s.mrr_at_10),
    ]
    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 3.8), sharey=True)
    width = 0.8 / len(MODES)
    for ax, (name, value) in zip(axes, metrics, strict=True):
        for m, mode in enumerate(MODES):
            xs = [i + (m - (len(MODES) - 1) / 2) * width for i in range(len(sizes))]
            ax.bar(xs, [value(report.retrieval[s][mode]) for s in sizes], width, label=mode)
        ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
        ax.set_xlabel("chunk size (characters)")
        ax.set_title(name)
        ax.set_ylim(0, 1.05)
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_answers(report: Report, path: Path) -> None:
    plt = _pyplot()
    rows = report.test_set
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(rows), 1) + 1.4))
    labels = [r.question if len(r.question) <= 48 else r.question[:45] + "..." for r in rows]
    ax.barh(range(len(rows)), [r.recall or 0.0 for r in rows], color="tab:green")
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("ROUGE-L recall of the answer against the reference")
    ax.set_title(
        f"{report.answerer}: mean recall {report.mean_recall:.2f}; "
        f"evidence held in {report.evidence_share:.0%} of labelled answers",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
