"""A timed lecture series served over HTTP: passages carry start/end seconds and a link to the
moment they are said; the answer's citations point at those passages."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest
from support.paths import REPO, VENV_BIN
from support.servers import Server, base_env
from support.streams import passages, post_sse
from support.timed_corpus import VTT_ID, write_timed_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def timed_server(tmp_path_factory, output_dir):
    root = tmp_path_factory.mktemp("timed")
    corpus = write_timed_corpus(root / "lectures")
    srv = Server(
        base_env(
            KGPT_CORPUS_DIR=str(corpus),
            KGPT_INDEX_DIR=str(root / "index"),
            KGPT_CHUNK_SIZE="200",
            KGPT_CHUNK_OVERLAP="50",
            KGPT_ANSWERER="extractive",
        ),
        output_dir / "timed-server.log",
    )
    srv.wait_ready()
    srv.env = {"KGPT_CORPUS_DIR": str(corpus), "KGPT_INDEX_DIR": str(root / "index")}
    yield srv
    srv.stop()


QUESTION = "Why do we zero the gradients before every backward pass?"


def test_passages_link_to_the_second_they_are_said(timed_server):
    response, events = post_sse(
        timed_server.url + "/karpathy-docs", data={"question": QUESTION, "k": 3}
    )
    assert response.status_code == 200
    found = passages(events)
    top = found[0]["metadata"]
    assert top["id"] == "01" and "zero the gradients" in found[0]["pageContent"]
    # The words are in the ninth caption line, shown from 24 s.
    assert top["start"] <= 24.0 < top["end"]
    assert top["link"] == f"https://youtu.be/{VTT_ID}?t={int(top['start'])}"
    for passage in found:
        meta = passage["metadata"]
        if meta["id"] == "04":  # plain text: no times, the video's own link
            assert "start" not in meta and "?t=" not in meta["link"]
        else:
            assert meta["link"].endswith(f"?t={int(meta['start'])}")


def test_text_format_lines_carry_the_deep_link(timed_server):
    response, events = post_sse(
        timed_server.url + "/karpathy-docs", data={"question": QUESTION, "format": "text"}
    )
    assert response.status_code == 200
    first = next(data for event, data in events if event == "message")
    assert re.search(rf"'link': 'https://youtu\.be/{VTT_ID}\?t=\d+'", first)


def test_citations_point_at_timed_passages(timed_server):
    _, docs = post_sse(timed_server.url + "/karpathy-docs", data={"question": QUESTION})
    _, tokens = post_sse(timed_server.url + "/karpathy-stream", data={"question": QUESTION})
    answer = "".join(data for event, data in tokens if event == "message")
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer)}
    assert cited, answer
    found = passages(docs)
    for n in cited:
        meta = found[n - 1]["metadata"]
        if "start" in meta:
            assert meta["link"].endswith(f"?t={int(meta['start'])}")
        else:
            assert "?t=" not in meta["link"]
    assert any("start" in found[n - 1]["metadata"] for n in cited)
    assert json.loads(docs[0][1])["data"]["metadata"]["id"] == "01"


def test_ask_lists_each_source_with_its_moment(timed_server):
    result = subprocess.run(
        [str(VENV_BIN / "karpathy-gpt"), "ask", QUESTION],
        cwd=REPO,
        env=base_env(
            **timed_server.env,
            KGPT_CHUNK_SIZE="200",
            KGPT_CHUNK_OVERLAP="50",
            KGPT_ANSWERER="extractive",
            COLUMNS="200",
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    sources = result.stdout.partition("Sources")[2]
    match = re.search(
        rf"\[1\] Backprop \(01\) at 0:(\d\d) https://youtu\.be/{VTT_ID}\?t=(\d+)", sources
    )
    assert match and int(match.group(1)) == int(match.group(2)), sources


def test_v1_sources_deep_link_to_the_moment(timed_server):
    body = {"model": "karpathy-gpt", "messages": [{"role": "user", "content": QUESTION}]}
    response = httpx.post(timed_server.url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200
    sources = response.json()["choices"][0]["sources"]
    top = sources[0]
    assert top["lecture_id"] == "01" and "zero the gradients" in top["text"]
    assert top["start"] <= 24.0 < top["end"]
    assert top["link"] == f"https://youtu.be/{VTT_ID}?t={int(top['start'])}"
    for source in sources:
        if "start" in source:
            assert source["link"].endswith(f"?t={int(source['start'])}")
        else:
            assert "?t=" not in source["link"]
