"""Tokens go out through sse-starlette and come back through httpx-sse unchanged."""

from __future__ import annotations

import pytest
from httpx_sse._decoders import SSEDecoder
from sse_starlette import ServerSentEvent


@pytest.mark.parametrize(
    "token", ["M", " ak", "\n", "line one\nline two", " two  spaces", "a\r\nb"]
)
def test_a_token_survives_sse_framing(token):
    wire = ServerSentEvent(data=token).encode().decode()
    decoder = SSEDecoder()
    events = [e for line in wire.splitlines() if (e := decoder.decode(line))]
    events.append(decoder.decode(""))
    data = "".join(e.data for e in events if e is not None)
    assert data == token.replace("\r\n", "\n")
