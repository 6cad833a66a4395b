"""Settings read from the environment (``KGPT_*`` and the usual ``OPENAI_*`` variables)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Every knob the service has; each field is documented in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="KGPT_", extra="ignore")

    corpus_dir: Path = REPO_ROOT.parent / "shared" / "corpus" / "karpathy"
    index_dir: Path = REPO_ROOT / ".kgpt" / "index"
    # postgresql://user:password@host:5432/dbname switches the index to PostgreSQL + pgvector.
    database_url: str | None = None
    database_pool_size: int = Field(4, ge=1, le=100)

    # onnx | onnx-int8 | torch: see embedding.py; each backend's vectors get their own index.
    embedding_backend: Literal["onnx", "onnx-int8", "torch"] = "onnx"
    model_dir: Path = REPO_ROOT / ".kgpt" / "models"  # the ONNX exports, made once per machine

    chunk_size: int = Field(800, ge=100, le=5000)
    chunk_overlap: int = Field(100, ge=0, le=1000)

    query_cache_size: int = Field(1024, ge=0)  # recent (question, k) retrievals kept; 0: none
    default_k: int = Field(3, ge=1, le=20)
    max_question_chars: int = Field(2000, ge=1)
    cors_origins: str = "*"

    answerer: str | None = None
    openai_api_key: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_API_KEY", "KGPT_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_BASE_URL", "KGPT_OPENAI_BASE_URL")
    )
    llm_model: str = "gpt-4o-mini"
    llm_timeout: float = Field(60.0, gt=0)
    llm_max_tokens: int = Field(512, ge=1)

    def resolved_corpus_dir(self) -> Path:
        return self.corpus_dir.expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
