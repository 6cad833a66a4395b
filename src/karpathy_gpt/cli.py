"""The ``karpathy-gpt`` command: ingest, serve, ask and eval. Thin: the work is in the modules."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from .config import Settings, get_settings

if TYPE_CHECKING:
    pass


class App(typer.Typer):
    """The commands; a failure of ours (a full disk, a database that refuses) is one line."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .errors import KgptError
        from .storage import describe, is_storage_error

        try:
            return super().__call__(*args, **kwargs)
        except KgptError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise SystemExit(1) from exc
        except OSError as exc:  # a writer without its own message (eval --report)
            if not is_storage_error(exc):
                raise
            line = describe(exc, Path(exc.filename or "."), "a file", "another folder")
            err.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
            raise SystemExit(1) from exc


app = App(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err = Console(stderr=True)


def _settings(corpus: Path | None, answering: bool = False) -> Settings:
    """The settings (with ``answering``, the answerer's too, as far as they can be checked
    before it starts), or a one-line error naming the variable that cannot work, and exit 2."""
    from .answer import check_answerer

    try:
        settings = get_settings()
        if answering:
            check_answerer(settings)
    except ValueError as exc:  # SettingsError included
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    if corpus is not None:
        settings = settings.model_copy(update={"corpus_dir": corpus})
    return settings


CorpusOption = Annotated[
    Path | None,
    typer.Option("--corpus", help="Lecture folder with videos.json (default: KGPT_CORPUS_DIR)."),
]


@app.command()
def ingest(
    corpus: Annotated[
        Path | None, typer.Argument(help="Lecture folder (default: KGPT_CORPUS_DIR).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Rebuild and re-embed everything, even if up to date.")
    ] = False,
) -> None:
    """Build the index for a lecture folder, embedding only new or changed lectures.

    With KGPT_DATABASE_URL set, the index is published to PostgreSQL as a new version.
    """
    from .adaptation import AdaptationError
    from .corpus import CorpusError
    from .index.backend import ingest as ingest_corpus
    from .storage import StorageError
    from .store import DatabaseError

    settings = _settings(corpus)
    started = time.perf_counter()
    logging.getLogger("karpathy_gpt").addHandler(logging.NullHandler())  # problems printed below
    try:
        result = ingest_corpus(settings, force=force, console=err)
    except (AdaptationError, CorpusError, DatabaseError, StorageError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    work = (
        f"embedded {result.embedded_chunks} chunks + {result.embedded_sentences} sentences, "
        f"{result.reused} vectors reused"
        if result.built
        else "already up to date"
    )
    model = "adapted model" if result.embedder.adapted else "packaged model"
    console.print(
        f"index ready: {len(result.store)} chunks from {result.lectures} lectures at "
        f"{result.store.path} ({model}; {work}; {time.perf_counter() - started:.1f}s)",
        highlight=False,
        soft_wrap=True,
    )
    result.store.close()
    for problem in result.problems:
        err.print(f"[yellow]left out:[/] {problem}", highlight=False, soft_wrap=True)
    if result.problems:
        err.print(
            f"{len(result.problems)} transcript(s) left out: fix them and run ingest again "
            "(only they will be embedded)",
            soft_wrap=True,
        )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the API (builds the index first if it is missing)."""
    import uvicorn

    _settings(None, answering=True)  # checked here, so the workers' factory cannot fail on them

    # The factory (not karpathy_app.py) so it runs from any working directory. On SIGTERM open
    # answer streams end themselves within seconds (api/streaming.py); anything else still
    # open after the timeout is cut, so a stuck client cannot hold a deploy up.
    uvicorn.run(
        "karpathy_gpt.api:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=10,
    )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="What to ask.")],
    k: Annotated[int, typer.Option(min=1, max=20, help="Passages to retrieve.")] = 3,
    corpus: CorpusOption = None,
) -> None:
    """Answer one question in the terminal: the streamed answer, then its sources."""
    from .answer import REFUSAL, AnswerError
    from .api.service import Service
    from .retrieval import QuestionError, checked_question

    settings = _settings(corpus, answering=True)
    try:
        question = checked_question(question, settings.max_question_chars)
    except QuestionError as exc:
        err.print(
            f"[red]error:[/] the {exc}: ask one of 1 to {settings.max_question_chars} "
            "characters (KGPT_MAX_QUESTION_CHARS)",
            soft_wrap=True,
        )
        raise typer.Exit(2) from exc
    logging.disable(logging.INFO)
    service = Service.start(settings)
    retrieval = service.retriever.search(question, k)
    answerer = service.answering(retrieval)

    async def run() -> None:
        async for token in answerer.stream(retrieval):
            console.print(token, end="", soft_wrap=True, highlight=False, markup=False)
        await service.answerer.aclose()

    try:
        asyncio.run(run())
    except AnswerError as exc:
        err.print(f"\n[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    # A refusal cites nothing: what follows it is only where the lectures came nearest.
    heading = "Nearest passages (none answers it)" if answerer is REFUSAL else "Sources"
    console.print(f"\n\n[bold]{heading}[/]")
    for n, hit in enumerate(retrieval.hits, start=1):
        meta = hit.chunk.metadata
        at = f" at {_clock(meta['start'])}" if "start" in meta else ""
        console.print(
            f"[{n}] {meta['title']} ({meta['id']}){at} {meta['link']}",
            highlight=False,
            markup=False,
        )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@app.command("eval")
def evaluate_cmd(
    questions: Annotated[
        list[Path] | None,
        typer.Option(help="Labelled questions (JSON lines); repeat for several files."),
    ] = None,
    offtopic: Annotated[
        list[Path] | None,
        typer.Option(help="Questions the lectures do not answer (JSON lines); repeatable."),
    ] = None,
    corpus: CorpusOption = None,
    compare: Annotated[
        bool, typer.Option(help="Also measure the seed design and plain RRF, paired.")
    ] = False,
    cv: Annotated[
        bool, typer.Option(help="Also k-fold cross-validate the ranker and the refusal.")
    ] = False,
    fit: Annotated[
        bool,
        typer.Option(help="Cross-validate, then fit both on every question into weights.json."),
    ] = False,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Folds of --cv and --fit.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    each: Annotated[bool, typer.Option(help="List every labelled question's rank.")] = False,
    report: Annotated[
        Path | None,
        typer.Option(help="Write report.md and PNG plots to this folder (needs matplotlib)."),
    ] = None,
) -> None:
    """Retrieval and answers on labelled questions, refusals on off-topic ones, with 95%
    intervals (default: every labelled set there is: docs/evaluation.md)."""
    from .answer import AnswerError
    from .evaluation import run

    settings = _settings(corpus, answering=True)
    try:
        measured = run.measure(
            settings,
            questions,
            offtopic,
            compare=compare,
            cv=cv or fit,
            fit=fit,
            folds=folds,
            console=err,
        )
    except AnswerError as exc:
        err.print(f"[red]error:[/] the answerer failed, nothing measured: {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    except (RuntimeError, ValueError) as exc:  # a missing extra, a bad question file
        err.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    run.print_measured(measured, console, err, as_json=as_json, each=each)
    if report is not None:
        from .report import write

        try:
            path = write(measured, report, settings)
        except RuntimeError as exc:  # matplotlib missing
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from exc
        console.print(f"report written: {path}", highlight=False)


if __name__ == "__main__":
    app()
