"""The web page in a real headless Chromium (Debian's, driven by Playwright) against the real
server: a typed question streams its answer and three passage cards, a citation highlights its
card, a follow-up uses the conversation, errors are shown, nothing is fetched from elsewhere;
a server with KGPT_API_KEYS gets its key from the user (kept in the tab, sent as a bearer
token); HTML and script in a transcript, a title and an answer are shown as text, never run.
Screenshots go to test-output/ for people to look at."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from support.servers import Server, base_env, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling out, and a closed network
# refuses it; the profile is a new empty folder each run.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTION = "What is a bigram language model?"
FOLLOW_UP = "And in which lecture is that explained?"
ANSWER_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.skip(
            f"Debian's chromium is not at {CHROMIUM}: `make test` installs it with apt-get "
            "(needs root and Debian's archive); or run `apt-get install -y chromium`"
        )
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        yield context
        context.close()


@pytest.fixture
def page(browser, server) -> Page:
    page = browser.new_page()
    page.requests = []
    page.console_errors = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    yield page
    page.close()


def open_page(page: Page, url: str) -> None:
    page.goto(url + "/")
    expect(page).to_have_title("Karpathy-GPT")


def type_and_ask(page: Page, question: str) -> None:
    page.locator("#question").fill("")  # an unanswered question is put back in the box
    page.locator("#question").focus()
    page.keyboard.type(question)
    page.keyboard.press("Enter")


def last_turn(page: Page, state: str):
    turn = page.locator(".turn").last
    expect(turn).to_have_attribute("data-state", state, timeout=ANSWER_TIMEOUT_MS)
    return turn


def test_question_streams_an_answer_with_cited_cards(page, server, output_dir):
    open_page(page, server.url)
    expect(page.locator("#answerer")).to_have_text("extractive")
    assert page.evaluate("document.activeElement.id") == "question"

    type_and_ask(page, QUESTION)
    turn = last_turn(page, "done")
    cards = turn.locator(".passage")
    expect(cards).to_have_count(3)
    answer = turn.locator(".answer")
    assert int(answer.get_attribute("data-deltas")) > 5, "the answer came token by token"
    assert "bigram" in answer.inner_text().lower()
    expect(page.locator("#question")).to_have_value("")
    page.keyboard.press("Tab")
    expect(page.locator("#send")).to_be_focused()

    # The cards are the answer's sources, in citation order, shown as the API sends them.
    api = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "karpathy-gpt", "messages": [{"role": "user", "content": QUESTION}]},
        timeout=60,
    ).json()["choices"][0]
    assert answer.inner_text() == api["message"]["content"]
    for card, source in zip(cards.all(), api["sources"], strict=True):
        assert card.locator(".passage-text").inner_text() == source["text"]
        assert source["title"] in card.locator(".passage-title").inner_text()
        assert f"Lecture {source['lecture_id']}" in card.locator(".passage-meta").inner_text()
        video = card.locator(".passage-meta a")
        assert video.get_attribute("href") == source["link"]
        assert video.get_attribute("rel") == "noopener noreferrer"

    citations = turn.locator("a.cite")
    assert citations.count() >= 1
    first = citations.first
    n = int(first.inner_text().strip("[]"))
    first.click()
    card = page.locator(f"#turn-1-passage-{n}")
    expect(card).to_have_class(re.compile(r"\bhighlighted\b"))
    expect(card).to_be_focused()
    expect(page.locator(".passage.highlighted")).to_have_count(1)

    # Keyboard only: a citation reached by focus and Enter does the same.
    last = citations.last
    m = int(last.inner_text().strip("[]"))
    last.focus()
    page.keyboard.press("Enter")
    expect(page.locator(f"#turn-1-passage-{m}")).to_have_class(re.compile(r"\bhighlighted\b"))
    expect(page.locator(".passage.highlighted")).to_have_count(1)
    page.screenshot(path=str(output_dir / "web-page.png"), full_page=True)

    # A follow-up is asked with the conversation: it finds the bigram lecture again.
    type_and_ask(page, FOLLOW_UP)
    second = last_turn(page, "done")
    expect(page.locator(".turn")).to_have_count(2)
    metas = second.locator(".passage-meta").all_inner_texts()
    assert len(metas) == 3 and any(m.startswith("Lecture 02") for m in metas), metas
    texts = second.locator(".passage-text").all_inner_texts()
    assert all("bigram" in text.lower() for text in texts), texts

    outside = [url for url in page.requests if not url.startswith(server.url + "/")]
    assert outside == [], f"the page fetched from outside the process: {outside}"
    assert page.console_errors == []


def test_readable_on_a_phone(page, server, output_dir):
    page.set_viewport_size({"width": 360, "height": 740})
    open_page(page, server.url)
    type_and_ask(page, "What is makemore?")
    turn = last_turn(page, "done")
    expect(turn.locator(".passage")).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 16
    page.screenshot(path=str(output_dir / "web-page-phone.png"), full_page=True)


def test_refusals_are_shown_and_text_is_never_markup(page, server):
    open_page(page, server.url)
    page.locator("#question").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#ask-hint")).to_have_text("Type a question first.")
    expect(page.locator(".turn")).to_have_count(0)

    type_and_ask(page, "why " * 520)
    turn = last_turn(page, "error")
    error = turn.locator(".error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("(400)")
    expect(error).to_contain_text("the limit is 2000")
    expect(page.locator("#question")).to_have_value(("why " * 520).strip())  # to shorten it

    markup = '<img src=x onerror="window.pwned=1"><b>bold</b> What is makemore?'
    type_and_ask(page, markup)
    turn = last_turn(page, "done")
    assert turn.locator(".question").inner_text() == markup
    assert page.locator("#conversation img, #conversation b").count() == 0
    assert page.evaluate("window.pwned") is None


def test_a_failing_answerer_and_a_stopped_server_are_shown(browser, index_dir, output_dir):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    env = base_env(KGPT_INDEX_DIR=str(index_dir), OPENAI_API_KEY="sk-x", OPENAI_BASE_URL=dead)
    srv = Server(env, output_dir / "server-web-dead-model.log")
    page = browser.new_page()
    try:
        srv.wait_ready()
        open_page(page, srv.url)
        expect(page.locator("#answerer")).to_have_text("gpt-4o-mini")
        type_and_ask(page, "What is makemore?")
        turn = last_turn(page, "error")
        expect(turn.locator(".passage")).to_have_count(3)  # the passages came before the failure
        expect(turn.locator(".error")).to_contain_text("The answerer failed")
        expect(turn.locator(".error")).to_contain_text(dead)
        page.screenshot(path=str(output_dir / "web-page-answerer-error.png"), full_page=True)

        srv.stop()
        type_and_ask(page, "What is a bigram?")
        turn = last_turn(page, "error")
        expect(turn.locator(".error")).to_contain_text("Cannot reach the server")
    finally:
        page.close()
        if srv.proc.poll() is None:
            srv.stop()


def test_browsers_get_the_page_and_api_clients_the_welcome(server):
    page = httpx.get(server.url + "/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "Accept" in page.headers["vary"]
    assert '<script src="/web/app.js"' in page.text and "http" not in page.text.split("</head>")[0]
    assert httpx.get(server.url + "/").json() == {"message": "Welcome to Karpathy GPT!"}
    for asset, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        response = httpx.get(f"{server.url}/web/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]


KEY = "kgpt-web-test-key-5c1e9a"
KEY_STORE = "karpathy-gpt-api-key"


@pytest.fixture(scope="module")
def guarded(index_dir, output_dir):
    srv = Server(
        base_env(KGPT_INDEX_DIR=str(index_dir), KGPT_API_KEYS=KEY),
        output_dir / "server-web-key.log",
    )
    srv.wait_ready()
    yield srv
    srv.stop()


def stored_key(page: Page) -> tuple[str | None, str | None]:
    return page.evaluate(
        f"[sessionStorage.getItem('{KEY_STORE}'), localStorage.getItem('{KEY_STORE}')]"
    )


def test_a_server_with_api_keys_asks_for_one_keeps_it_and_sends_it(browser, guarded, output_dir):
    page = browser.new_page()
    sent: list[tuple[str, str | None]] = []
    page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
    try:
        open_page(page, guarded.url)  # the page itself is public
        expect(page.locator("#answerer")).to_have_text("extractive")  # so is /healthz
        form = page.locator("#key-form")
        expect(form).to_be_visible()
        expect(page.locator("#key-message")).to_contain_text("only answers with an API key")
        expect(page.locator("#key-message")).to_contain_text("401")
        expect(page.locator("#server-error")).to_be_hidden()

        type_and_ask(page, QUESTION)  # asked anyway: the turn says what to do
        turn = last_turn(page, "error")
        expect(turn.locator(".error")).to_have_text(
            "This server needs an API key: enter it above, then ask again."
        )
        expect(page.locator("#key")).to_be_focused()
        expect(page.locator("#question")).to_have_value(QUESTION)
        page.screenshot(path=str(output_dir / "web-page-api-key.png"), full_page=True)

        page.keyboard.type("not-the-key")
        page.keyboard.press("Enter")
        expect(page.locator("#key-message")).to_contain_text("refused this API key")
        expect(form).to_be_visible()
        assert stored_key(page) == [None, None], "a refused key is not kept"

        page.locator("#key").fill(KEY)
        page.keyboard.press("Enter")
        expect(form).to_be_hidden()
        expect(page.locator("#key-status")).to_be_visible()
        expect(page.locator("#question")).to_be_focused()
        assert stored_key(page) == [KEY, None], "kept for this tab only, unless remembered"
        page.keyboard.press("Enter")  # the question is still in the box
        turn = last_turn(page, "done")
        expect(turn.locator(".passage")).to_have_count(3)
        chats = [auth for url, auth in sent if url.endswith("/v1/chat/completions")]
        assert chats[0] is None and chats[-1] == f"Bearer {KEY}", chats
        assert not any(KEY in url for url, _ in sent), "the key never goes in a URL"

        page.reload()  # the tab keeps its key
        expect(page.locator("#answerer")).to_have_text("extractive")
        type_and_ask(page, "What is makemore?")
        last_turn(page, "done")
        expect(form).to_be_hidden()

        page.locator("#key-forget").click()  # forgotten: the server asks again
        expect(form).to_be_visible()
        assert stored_key(page) == [None, None]

        page.locator("#key").fill(KEY)
        page.locator("#key-remember").check()
        page.locator("#key-use").click()
        expect(form).to_be_hidden()
        assert stored_key(page) == [KEY, KEY]
    finally:
        page.close()
    # Remembered: another tab of the same browser profile needs no prompt.
    other = browser.new_page()
    try:
        open_page(other, guarded.url)
        type_and_ask(other, "What is a bigram?")
        last_turn(other, "done")
        expect(other.locator("#key-form")).to_be_hidden()
        other.locator("#key-forget").click()
        assert stored_key(other) == [None, None]
    finally:
        other.close()


MARKUP_TITLE = 'Tokenizers <img src=x onerror="window.pwned=1">'
MARKUP_SENTENCES = [
    'The tokenizer turns text into tokens, even text like <img src=x onerror="window.pwned=2"> '
    "that looks like a web page.",
    "The tokenizer reads <script>window.pwned=3</script> as plain characters when it turns "
    "text into tokens.",
    'A tag such as <b onmouseover="window.pwned=4">bold</b> is just more text for the '
    "tokenizer to turn into tokens.",
]


@pytest.fixture(scope="module")
def markup_server(tmp_path_factory, output_dir):
    """A lecture of our own whose title and transcript hold HTML and script."""
    corpus = tmp_path_factory.mktemp("markup-corpus")
    filler = (
        "Byte pair encoding merges the most frequent pair of tokens again and again. "
        "The vocabulary grows with every merge, and the sequences get shorter. "
    )
    (corpus / "01-tokenizer.txt").write_text(" ".join(MARKUP_SENTENCES) + " " + filler * 3)
    manifest = [
        {
            "id": "01",
            "title": MARKUP_TITLE,
            "link": "javascript:window.pwned=5",
            "transcript": "01-tokenizer.txt",
        }
    ]
    (corpus / "videos.json").write_text(json.dumps(manifest))
    env = base_env(
        KGPT_CORPUS_DIR=str(corpus), KGPT_INDEX_DIR=str(tmp_path_factory.mktemp("markup-index"))
    )
    srv = Server(env, output_dir / "server-web-markup.log")
    srv.wait_ready()
    yield srv
    srv.stop()


def test_markup_in_transcripts_and_answers_is_shown_as_text(browser, markup_server, output_dir):
    page = browser.new_page()
    try:
        open_page(page, markup_server.url)
        type_and_ask(page, "How does the tokenizer turn text into tokens?")
        turn = last_turn(page, "done")
        answer = turn.locator(".answer").inner_text()
        assert "<script>window.pwned=3</script>" in answer or "<img src=x" in answer, answer
        cards = turn.locator(".passage")
        assert cards.count() >= 1
        shown = " ".join(cards.locator(".passage-text").all_inner_texts())
        for sentence in MARKUP_SENTENCES:
            assert sentence in shown
        assert MARKUP_TITLE in cards.first.locator(".passage-title").inner_text()
        # Nothing became an element, nothing ran, and the javascript: link is not a link.
        assert page.locator("#conversation img, #conversation script, #conversation b").count() == 0
        assert page.locator(".passage-meta a").count() == 0
        assert page.evaluate("window.pwned") is None
        page.screenshot(path=str(output_dir / "web-page-markup.png"), full_page=True)
    finally:
        page.close()
