"""Reading what the server streams: SSE events, the original API's passages, and answers read
on a thread with the time each event came (to leave mid-answer, as a closed tab does)."""

from __future__ import annotations

import json
import threading
import time

import httpx


class StreamReader:
    """Reads an SSE answer on a thread, recording each event and when it came."""

    def __init__(self, url: str, question: str, stop_after: int | None = None, **fields):
        self.url, self.question, self.stop_after, self.fields = url, question, stop_after, fields
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.events: list[tuple[float, str, str]] = []
        self.first_token = threading.Event()
        self._leave = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        from httpx_sse import EventSource

        with httpx.Client(timeout=120) as client, self._request(client) as response:
            self.status, self.headers = response.status_code, dict(response.headers)
            if response.status_code != 200:
                self.body = response.read()
            else:
                # Returning early leaves the block, which closes the connection: a client gone.
                self._consume(EventSource(response).iter_sse())
        self.first_token.set()

    def _request(self, client: httpx.Client):
        return client.stream("POST", self.url, data={"question": self.question, **self.fields})

    def _consume(self, events) -> None:
        for event in events:
            self.events.append((time.monotonic(), event.event, event.data))
            if event.event == "message":
                self.first_token.set()
            if self._leaving():
                return

    def _leaving(self) -> bool:
        return self._leave.is_set() or bool(self.stop_after and len(self.tokens) >= self.stop_after)

    def leave(self) -> None:
        """Disconnect at the next event, as a closed browser tab does."""
        self._leave.set()

    @property
    def tokens(self) -> list[str]:
        return [data for _, event, data in self.events if event == "message"]

    @property
    def last_event(self) -> str | None:
        return self.events[-1][1] if self.events else None

    def join(self, timeout: float = 120) -> StreamReader:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"no end of the answer stream in {timeout} s"
        return self


class ChatReader(StreamReader):
    """Reads a ``stream: true`` answer of /v1/chat/completions the same way: OpenAI's chunks,
    then an error chunk or ``[DONE]``."""

    def _request(self, client: httpx.Client):
        body = {
            "model": self.fields.get("model", "karpathy-gpt"),
            "messages": [{"role": "user", "content": self.question}],
            "stream": True,
        }
        return client.stream("POST", self.url, json=body)

    def _consume(self, events) -> None:
        for event in events:
            if event.data == "[DONE]":
                self.events.append((time.monotonic(), "done", event.data))
                return
            payload = json.loads(event.data)
            if "error" in payload:
                self.events.append((time.monotonic(), "error", event.data))
                continue
            choice = payload["choices"][0]
            if "sources" in choice:
                self.sources = choice["sources"]
            if choice["delta"].get("content"):
                self.events.append((time.monotonic(), "message", choice["delta"]["content"]))
                self.first_token.set()
            if self._leaving():
                return

    sources: list[dict] | None = None

    @property
    def error(self) -> dict | None:
        errors = [json.loads(data)["error"] for _, event, data in self.events if event == "error"]
        return errors[-1] if errors else None


def sse_events(response: httpx.Response) -> list[tuple[str, str]]:
    """(event, data) pairs of a finished SSE response, parsed by httpx-sse."""
    from httpx_sse import EventSource

    return [(e.event, e.data) for e in EventSource(response).iter_sse()]


def post_sse(url: str, **kwargs) -> tuple[httpx.Response, list[tuple[str, str]]]:
    with httpx.Client(timeout=30) as client, client.stream("POST", url, **kwargs) as response:
        if response.status_code != 200:
            response.read()
            return response, []
        return response, sse_events(response)


def passages(events: list[tuple[str, str]]) -> list[dict]:
    return [json.loads(data)["data"] for event, data in events if event == "message"]
