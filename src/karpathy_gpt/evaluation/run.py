"""``karpathy-gpt eval``: the served retrieval and answerer measured on labelled questions (and
refusals on off-topic ones), cross-validated figures of the fitted models, the two baselines,
and the fit itself. Printing is ``evaluation.show``'s."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from .. import bank, coverage, ranking
from ..answer import NOT_COVERED, Answerer, answering, refuses_offtopic
from ..config import Settings
from ..corpus import read_corpus
from ..embedding import Embedder
from ..retrieval import Retriever
from .baselines import build_baselines
from .fit import Judged, cross_validate, fingerprint, fit_all, prepare
from .labels import Labelled, LabelProblem, OffTopic
from .metrics import Found, found, holds_evidence


@dataclass
class Measured:
    """Everything eval prints, for the same questions."""

    labelled: list[Labelled]
    offtopic: list[OffTopic]
    answerer: str
    served: list[Judged]  # the served models on the labelled questions
    served_off: list[Judged]
    cv: list[Judged] | None = None  # cross-validated, when asked
    cv_off: list[Judged] | None = None
    baselines: dict[str, list[Found]] = field(default_factory=dict)
    in_sample: int = 0  # questions (labelled or off-topic) the served weights were fitted on
    model: str = ""  # the embedder's name (an adapted model's holds "+adapted-")
    label_problems: list[LabelProblem] = field(default_factory=list)

    @property
    def main(self) -> tuple[str, list[Judged], list[Judged]]:
        """The figures to report: the cross-validated ones when measured (a figure on the
        questions the served models were fitted on is not evidence), else the served ones."""
        if self.cv is not None and self.cv_off is not None:
            return "cross-validated", self.cv, self.cv_off
        return "served", self.served, self.served_off

    @property
    def main_answerer(self) -> str:
        """Who wrote the main figures' answers: cross-validation judges the offline answer,
        refusing, whatever answerer is served."""
        return "extractive" if self.main[0] == "cross-validated" else self.answerer


def served(
    retriever: Retriever,
    answerer: Answerer,
    refuse: bool,
    questions: list[Labelled | OffTopic],
    k: int,
) -> list[Judged]:
    """Each question retrieved (10 passages) and answered from the first ``k``, as served."""

    async def answer_all() -> list[Judged]:
        out = []
        try:
            for q in questions:
                retrieval = retriever.search(q.question, 10)
                passages = [(h.chunk.metadata["id"], h.chunk.text) for h in retrieval.hits]
                retrieval.hits = retrieval.hits[:k]
                replying = answering(answerer, retrieval, refuse)
                text = "".join([t async for t in replying.stream(retrieval)]).strip()
                refused = text == NOT_COVERED
                if isinstance(q, Labelled):
                    out.append(
                        Judged(
                            q.question,
                            q.type,
                            found(q, passages),
                            text,
                            holds_evidence(q, text),
                            retrieval.offtopic,
                            refused,
                        )
                    )
                else:
                    out.append(
                        Judged(q.question, q.type, None, text, None, retrieval.offtopic, refused)
                    )
        finally:
            await answerer.aclose()
        return out

    return asyncio.run(answer_all())


def compare_baselines(
    settings: Settings, lectures: list, labelled: list[Labelled], console: Console
) -> dict[str, list[Found]]:
    """The baselines' retrieval on the same questions (the packaged model's vectors), built
    from ``lectures`` (``corpus.Lecture``)."""
    embedder = Embedder.from_settings(settings)
    console.print("eval: building the baselines (LangChain's splitter, the packaged model)")
    out = {}
    for baseline in build_baselines(settings, lectures, embedder):
        out[baseline.name] = [
            found(q, baseline.passages(q.question, embedder.embed_one(q.question)))
            for q in labelled
        ]
    return out


def cross_validated(
    retriever: Retriever,
    labelled: list[Labelled],
    offtopic: list[OffTopic],
    folds: int,
    fit_to: Path | None = None,
) -> tuple[list[Judged], list[Judged]]:
    """k-fold figures of the ranker and coverage model; with ``fit_to``, then the models fitted
    on every question, written into that weights file (under the embedder's kind)."""
    on = [prepare(retriever, q) for q in labelled]
    off = [prepare(retriever, q) for q in offtopic]
    judged_on, judged_off = cross_validate(on, off, folds)
    if fit_to is not None:
        kind = "adapted" if retriever.embedder.adapted else "packaged"
        try:
            weights = json.loads(fit_to.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            weights = {}
        model = retriever.embedder.name
        weights[kind] = {**fit_all(on, off, model), "model": model}
        tmp = fit_to.with_name(f".{fit_to.name}.tmp")
        tmp.write_text(json.dumps(weights, indent=1) + "\n", encoding="utf-8")
        tmp.replace(fit_to)
        # The file and the models built from it, read again at the next search.
        for cached in (ranking._weights, ranking.ranker):
            cached.cache_clear()
        coverage.refitted()
    return judged_on, judged_off


def fitted_on(questions: list[Labelled | OffTopic], adapted: bool) -> int:
    """How many of ``questions`` the served weights were fitted on."""
    try:
        seen = set(ranking.fitted(adapted)["fitted_on"]["questions"])
    except (OSError, KeyError, ValueError):
        return 0
    return sum(fingerprint(q.question) in seen for q in questions)


def measure(
    settings: Settings,
    question_files: list[Path] | None,
    offtopic_files: list[Path] | None,
    *,
    compare: bool = False,
    cv: bool = False,
    fit: bool = False,
    folds: int = 5,
    console: Console | None = None,
) -> Measured:
    from ..answer import make_answerer
    from ..index.backend import open_serving
    from .labels import (
        DEFAULT_LABELLED,
        DEFAULT_OFFTOPIC,
        label_problems,
        load_offtopic,
        load_questions,
    )

    console = console or Console(stderr=True)
    labelled = [q for f in _files(question_files, DEFAULT_LABELLED) for q in load_questions(f)]
    off = [q for f in _files(offtopic_files, DEFAULT_OFFTOPIC, False) for q in load_offtopic(f)]
    if not labelled:
        raise ValueError("no labelled questions: pass --questions FILE.jsonl")
    if cv and (len(labelled) < 2 or len(off) < 2):  # each fit needs both kinds
        raise ValueError(
            "--cv and --fit need at least 2 labelled and 2 off-topic questions "
            f"(there are {len(labelled)} and {len(off)}): pass --questions and --offtopic files"
        )
    store, embedder = open_serving(settings, console=console)
    # The bank is read if this corpus is the one it was written for, whatever weights.json says.
    lectures = read_corpus(settings.resolved_corpus_dir()).lectures
    retriever = Retriever(store, embedder, bank.for_corpus(lectures, embedder, _stored(embedder)))
    try:
        measured = Measured(labelled, off, "", [], [], model=embedder.name)
        if cv:
            console.print(f"eval: {folds}-fold cross-validation of the ranker and the refusal")
            weights = ranking.WEIGHTS_FILE if fit else None
            measured.cv, measured.cv_off = cross_validated(
                retriever, labelled, off, folds, fit_to=weights
            )
        answerer = make_answerer(settings)
        refuses = refuses_offtopic(settings)
        measured.answerer = answerer.name
        measured.served = served(retriever, answerer, refuses, labelled, settings.default_k)
        measured.served_off = served(
            retriever, make_answerer(settings), refuses, off, settings.default_k
        )
        measured.in_sample = fitted_on([*labelled, *off], embedder.adapted)
        chunks = getattr(store, "chunks", None)
        if chunks is not None:
            measured.label_problems = label_problems(labelled, chunks)
        if compare:
            measured.baselines = compare_baselines(settings, lectures, labelled, console)
    finally:
        store.close()
    return measured


def _stored(embedder) -> dict | None:
    """The question bank's vectors weights.json keeps for ``embedder``'s kind, if any."""
    try:
        return ranking.fitted(embedder.adapted).get("bank")
    except (OSError, KeyError, ValueError):
        return None


def _files(given: list[Path] | None, defaults, required: bool = True) -> list[Path]:
    if given:
        missing = [str(f) for f in given if not f.is_file()]
        if missing:
            raise ValueError(f"no such question file: {', '.join(missing)}")
        return list(given)
    found = [f for f in defaults if f.is_file()]
    if required and not found:
        raise ValueError("no labelled questions found: pass --questions FILE.jsonl")
    return found


def print_measured(
    measured: Measured, console: Console, err: Console, as_json: bool, each: bool
) -> None:
    from .show import as_json as to_json
    from .show import show

    for p in measured.label_problems:
        err.print(
            f"[yellow]label:[/] {p.question!r} accepts lecture {p.lecture}, but {p.reason}, "
            "so that lecture can never count as a hit: widen the evidence or drop the lecture.",
            soft_wrap=True,
        )
    if as_json:
        console.print_json(json.dumps(to_json(measured)))
        return
    if each:
        for j in measured.served:
            rank = j.found.rank if j.found else None
            mark = "[green]✓[/]" if rank and rank <= 3 else "[red]✗[/]"
            console.print(f"{mark} rank {rank or '-':>2}  {j.question}", soft_wrap=True)
    show(measured, console)
    ranks = [j.found.rank for j in measured.served]
    n = len(ranks)
    console.print(
        f"\nhit@1 {sum(r == 1 for r in ranks)}/{n}   "
        f"hit@3 {sum(r is not None and r <= 3 for r in ranks)}/{n}   "
        f"MRR@10 {sum(1 / r for r in ranks if r) / max(n, 1):.3f}"
    )
