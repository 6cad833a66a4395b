"""Settings read from the environment (``KGPT_*`` and the usual ``OPENAI_*`` variables)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import KgptError


def _project_root() -> Path:
    """The source checkout this runs from (``pip install -e``, ``make install``); from an
    installed wheel, which has no checkout, the working directory: the default paths below are
    then relative to where the server is started, as the README's table reads."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


REPO_ROOT = _project_root()


#: How the embedding model runs (embedding.py); each gives its vectors their own index.
EmbeddingBackend = Literal["onnx", "onnx-int8", "torch"]


class Settings(BaseSettings):
    """Every knob the service has, read from ``KGPT_*`` (and ``OPENAI_*``) variables."""

    model_config = SettingsConfigDict(env_prefix="KGPT_", extra="ignore")

    # Each description is a row of docs/configuration.md (``python -m karpathy_gpt.config_doc``).
    corpus_dir: Path = Field(
        REPO_ROOT.parent / "shared" / "corpus" / "karpathy",
        description="lecture folder: transcripts, and `videos.json` or file names to infer it "
        "from (docs/corpus.md)",
    )
    index_dir: Path = Field(
        REPO_ROOT / ".kgpt" / "index",
        description="where the embedded index and the embedding cache are kept",
    )
    database_url: str | None = Field(
        None,
        description="`postgresql://user:password@host:5432/db`: keep the index in PostgreSQL + "
        "pgvector instead (docs/postgres.md)",
    )
    database_pool_size: int = Field(
        4, ge=1, le=100, description="connections each API process may hold"
    )
    database_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        description="seconds a search waits for a database connection (and to connect at "
        "start); past it the searching endpoints answer `503` + `Retry-After`",
    )
    embedding_backend: EmbeddingBackend = Field(
        "onnx",
        description="`onnx` (ONNX Runtime, float32: torch's vectors), `onnx-int8` (faster, "
        "loses a hit@1 of the eval) or `torch` (sentence-transformers); each backend's vectors "
        "get their own index",
    )
    model_dir: Path = Field(
        REPO_ROOT / ".kgpt" / "models",
        description="where the ONNX exports of the model are kept (made once per machine)",
    )
    adapt: bool = Field(
        True,
        description="adapt the embedding model to the corpus once, without labels (inverse "
        "cloze, ~10 min on 2 cores, kept under `KGPT_MODEL_DIR`; docs/retrieval.md); `false` "
        "serves the packaged model",
    )
    refuse_offtopic: bool | None = Field(
        None,
        description="say the lectures do not cover a question the retrieval judges off-topic, "
        "instead of answering; unset: yes for the extractive answerer, no for models (which are "
        "told to answer only from the passages)",
    )
    chunk_size: int = Field(800, ge=100, le=5000, description="chunk length, in characters")
    chunk_overlap: int = Field(
        100, ge=0, le=1000, description="whole-sentence overlap of neighbouring chunks"
    )
    query_cache_size: int = Field(
        1024,
        ge=0,
        description="recent distinct (question, k) retrievals a server process keeps (~7 KB "
        "each; embedded index only); `0` turns the cache off",
    )
    search_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="searches one process runs at once; more wait their turn. `0`: one per "
        "core, or `KGPT_DATABASE_POOL_SIZE` if larger (each holds ONNX Runtime's working "
        "memory, and more than the cores is slower)",
    )
    default_k: int = Field(3, ge=1, le=20, description="passages when a request names no `k`")
    max_question_chars: int = Field(2000, ge=1, description="longest question accepted")
    cors_origins: str = Field("*", description="comma-separated allowed origins")
    api_keys: SecretStr | None = Field(
        None,
        description="comma-separated bearer tokens; unset: no auth, as the original "
        "(docs/deployment.md)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description="`debug` also logs each question and its passages; `info` and above never do",
    )
    model_name: str = Field(
        "karpathy-gpt",
        min_length=1,
        max_length=100,
        description="the model name `/v1/models` lists and `/v1/chat/completions` accepts",
    )
    history_messages: int = Field(
        8,
        ge=0,
        le=100,
        description="earlier conversation messages kept for the answerer and a follow-up's "
        "retrieval",
    )
    answerer: str | None = Field(
        None,
        description="`extractive`, `openai` or `gguf`; unset: `openai` if `OPENAI_API_KEY` is "
        "set, else `gguf` if `KGPT_GGUF` is set, else `extractive` (docs/answerers.md)",
    )
    openai_api_key: str | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "KGPT_OPENAI_API_KEY"),
        description="makes an OpenAI chat model write the answers (never logged or shown)",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "KGPT_OPENAI_BASE_URL"),
        description="any OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio); "
        "unset: OpenAI",
    )
    llm_model: str = Field(
        "gpt-4o-mini",
        description="chat model name; checked once against the server's `/v1/models`",
    )
    llm_timeout: float = Field(
        60.0,
        gt=0,
        description="longest wait (s) for the model server's first token, and then between "
        "two tokens",
    )
    llm_connect_timeout: float = Field(5.0, gt=0, description="connect timeout (s)")
    llm_retries: int = Field(
        2,
        ge=0,
        le=5,
        description="retries of a refused or dropped connection before the first token (never "
        "of a timeout)",
    )
    llm_max_tokens: int = Field(512, ge=1, description="answer length cap (both LLM answerers)")
    rewrite_timeout: float = Field(
        10.0,
        gt=0,
        description="longest a follow-up's rewrite into a standalone question may take (s); "
        "past it the question is used as asked",
    )
    gguf: Path | None = Field(None, description="a `.gguf` model run in-process (`gguf` extra)")
    chat_format: str | None = Field(
        None,
        description="llama-cpp-python chat format (`chatml`, `gemma`, `llama-3`, ...) for a "
        "file without a template; unset: the file's own",
    )
    gguf_context: int = Field(
        4096,
        ge=256,
        description="context length (tokens): passages, conversation and answer must fit",
    )
    gguf_threads: int = Field(1, ge=1, description="llama.cpp threads for generation")
    gguf_batch_threads: int = Field(2, ge=1, description="llama.cpp threads for reading the prompt")
    gguf_queue: int = Field(
        4,
        ge=0,
        description="requests that may wait while the model writes an answer; more get `503`",
    )
    max_streams: int = Field(
        64,
        ge=1,
        le=10_000,
        description="answer streams one process keeps open at once, whatever the answerer; "
        "more get `503` + `Retry-After`",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def api_key_list(self) -> list[str]:
        raw = self.api_keys.get_secret_value() if self.api_keys else ""
        return [key.strip() for key in raw.split(",") if key.strip()]

    def resolved_corpus_dir(self) -> Path:
        return self.corpus_dir.expanduser().resolve()


class SettingsError(KgptError, ValueError):
    """The environment holds settings that cannot be used; the message names each variable."""


@lru_cache
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_invalid(exc)) from None


def describe_invalid(exc: ValidationError) -> str:
    """``KGPT_CHUNK_SIZE='abc': Input should be a valid integer; ...`` for each invalid value."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = field if field.isupper() else f"KGPT_{field.upper()}"  # aliases: OPENAI_*
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{variable}={error.get('input')!r}: {message}")
    return "invalid setting(s): " + "; ".join(problems)
