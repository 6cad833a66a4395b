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
    """Every knob the service has; each field is documented in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="KGPT_", extra="ignore")

    corpus_dir: Path = REPO_ROOT.parent / "shared" / "corpus" / "karpathy"
    index_dir: Path = REPO_ROOT / ".kgpt" / "index"
    # postgresql://user:password@host:5432/dbname switches the index to PostgreSQL + pgvector.
    database_url: str | None = None
    database_pool_size: int = Field(4, ge=1, le=100)
    database_timeout: float = Field(30.0, gt=0, le=600)

    # onnx | onnx-int8 | torch: see embedding.py; each backend's vectors get their own index.
    embedding_backend: EmbeddingBackend = "onnx"
    model_dir: Path = REPO_ROOT / ".kgpt" / "models"  # the ONNX exports, made once per machine

    chunk_size: int = Field(800, ge=100, le=5000)
    chunk_overlap: int = Field(100, ge=0, le=1000)

    query_cache_size: int = Field(1024, ge=0)  # recent (question, k) retrievals kept; 0: none
    # Searches run at once in one process (0: one per core, or KGPT_DATABASE_POOL_SIZE if
    # larger); more wait their turn. Each running search holds ONNX Runtime's working memory.
    search_threads: int = Field(0, ge=0, le=256)
    default_k: int = Field(3, ge=1, le=20)
    max_question_chars: int = Field(2000, ge=1)
    cors_origins: str = "*"
    # Comma-separated bearer tokens; unset or empty leaves the API open, as the original was.
    api_keys: SecretStr | None = None
    # debug also logs questions and retrieved passages; info and above never do.
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # /v1: the model name OpenAI clients pick, and how much of a conversation is kept.
    model_name: str = Field("karpathy-gpt", min_length=1, max_length=100)
    history_messages: int = Field(8, ge=0, le=100)

    answerer: str | None = None
    openai_api_key: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_API_KEY", "KGPT_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_BASE_URL", "KGPT_OPENAI_BASE_URL")
    )
    llm_model: str = "gpt-4o-mini"
    # The longest wait for the model server's first token, and then between two tokens.
    llm_timeout: float = Field(60.0, gt=0)
    llm_connect_timeout: float = Field(5.0, gt=0)
    # Retries of a refused or dropped connection before the first token (never of a timeout).
    llm_retries: int = Field(2, ge=0, le=5)
    llm_max_tokens: int = Field(512, ge=1)
    # Condensing a follow-up into a standalone question: bounded, or the caller falls back.
    rewrite_timeout: float = Field(10.0, gt=0)

    # A GGUF model run in-process by llama-cpp-python (the `gguf` extra).
    gguf: Path | None = None
    chat_format: str | None = None  # llama-cpp-python's name; unset: the file's own template
    gguf_context: int = Field(4096, ge=256)
    gguf_threads: int = Field(1, ge=1)
    gguf_batch_threads: int = Field(2, ge=1)
    # Requests that may wait while the one generation a process runs at a time is written.
    gguf_queue: int = Field(4, ge=0)

    # Answer streams one server process keeps open at once, whatever the answerer; more: 503.
    max_streams: int = Field(64, ge=1, le=10_000)

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
