// Karpathy-GPT's page. It asks /v1/chat/completions with stream: true, so one request brings the
// passages (in the first event) and the answer, token by token, from the same retrieval; earlier
// turns go along so a follow-up is read with the conversation. Citations [n] link to the passage
// cards. Every text from the server is set with textContent: nothing it sends becomes markup.
// A server started with KGPT_API_KEYS answers 401: the page then asks for a key, keeps it in
// sessionStorage (localStorage if the user ticks "remember") and sends it as a bearer token.
"use strict";

const state = { model: null, turns: [], count: 0, controller: null };
const $ = (id) => document.getElementById(id);
const CITATION = /\[(\d+(?:\s*,\s*\d+)*)\]/g;

function element(tag, attributes = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}

// --- the API key (servers started with KGPT_API_KEYS) ---------------------------------------

const KEY_NAME = "karpathy-gpt-api-key";
const VISIBLE_ASCII = /^[\x21-\x7e]+$/; // what an HTTP header can carry, without blanks
let keyInMemory = ""; // where storage is switched off

class KeyNeeded extends Error {}

const apiKey = {
  get() {
    try {
      return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME) || keyInMemory;
    } catch {
      return keyInMemory;
    }
  },
  set(key, remember) {
    keyInMemory = key;
    try {
      sessionStorage.setItem(KEY_NAME, key);
      if (remember) localStorage.setItem(KEY_NAME, key);
      else localStorage.removeItem(KEY_NAME);
    } catch {
      // storage refused: the key lives until the page is closed
    }
  },
  forget() {
    keyInMemory = "";
    try {
      sessionStorage.removeItem(KEY_NAME);
      localStorage.removeItem(KEY_NAME);
    } catch {
      // nothing was stored
    }
  },
  headers() {
    const key = this.get();
    return key ? { Authorization: `Bearer ${key}` } : {};
  },
};

// A 401: forget a key the server refused, ask for one, and say why in the turn.
function keyNeeded() {
  const refused = Boolean(apiKey.get());
  apiKey.forget();
  showKeyForm(refused
    ? "The server refused this API key (401 unauthorized). Check it and enter it again."
    : "This server only answers with an API key (401 unauthorized). Enter the key its "
      + "owner gave you.");
  return new KeyNeeded(refused
    ? "The server refused the API key: enter a valid key above, then ask again."
    : "This server needs an API key: enter it above, then ask again.");
}

function showKeyForm(message) {
  $("key-message").textContent = message;
  $("key-form").hidden = false;
  showKeyStatus();
}

function showKeyStatus() {
  $("key-status").hidden = !apiKey.get();
}

async function useKey() {
  const key = $("key").value.trim();
  if (!VISIBLE_ASCII.test(key)) {
    $("key-message").textContent = key
      ? "An API key is letters, digits and punctuation, without spaces."
      : "Enter the key first.";
    $("key").focus();
    return;
  }
  apiKey.set(key, $("key-remember").checked);
  $("key").value = "";
  $("key-form").hidden = true;
  showKeyStatus();
  await loadStatus();
  if ($("key-form").hidden) $("question").focus();
  else $("key").focus();
}

// --- the server's state: which answerer, which model --------------------------------------

async function loadStatus() {
  try {
    const health = await getJSON("/healthz");
    $("answerer").textContent = health.answerer;
    const models = await getJSON("/v1/models");
    state.model = models.data[0].id;
    $("server-error").hidden = true;
  } catch (error) {
    if (error instanceof KeyNeeded) return; // the key form says what to do
    $("answerer").textContent = "unknown";
    showServerError(error.message);
  }
}

async function getJSON(path) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json", ...apiKey.headers() } });
  } catch {
    throw new Error(unreachable());
  }
  if (response.status === 401) throw keyNeeded();
  if (!response.ok) throw new Error(await refusal(response));
  return response.json();
}

function unreachable() {
  return `Cannot reach the server at ${location.origin}: is it running? Reload the page once it is.`;
}

async function refusal(response) {
  let message = "";
  try {
    const body = await response.json();
    message = (body && body.error && body.error.message) || (body && body.detail) || "";
  } catch {
    message = response.statusText;
  }
  if (response.status === 503) {
    const retry = response.headers.get("Retry-After");
    const when = retry ? `try again in ${retry} s` : "try again shortly";
    return `The answerer is busy: ${when}.${message ? ` (${message})` : ""}`;
  }
  return `The server refused the question (${response.status})${message ? `: ${message}` : "."}`;
}

function showServerError(message) {
  const box = $("server-error");
  box.textContent = message;
  box.hidden = false;
}

// --- one question and its answer ------------------------------------------------------------

function newTurn(question) {
  const n = ++state.count;
  const root = element("article", { class: "turn", id: `turn-${n}`, "data-state": "asking" });
  const answer = element("div", { class: "answer", "aria-live": "polite", "aria-busy": "true" });
  const status = element("p", { class: "turn-status" }, "Searching the lectures…");
  const error = element("div", { class: "error", role: "alert" });
  error.hidden = true;
  const heading = element("h3", { class: "passages-heading" }, "Passages");
  heading.hidden = true;
  const list = element("ol", { class: "passages" });
  root.append(element("h2", { class: "question" }, question), answer, status, error, heading, list);
  $("conversation").append(root);
  root.scrollIntoView({ block: "start" });
  return { n, question, text: "", sources: [], deltas: 0, done: false,
           root, answer, status, error, heading, list };
}

function history() {
  return state.turns.flatMap((turn) => [
    { role: "user", content: turn.question },
    { role: "assistant", content: turn.text },
  ]);
}

async function ask(question) {
  if (!state.model) await loadStatus();
  const turn = newTurn(question);
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  try {
    let response;
    try {
      response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "text/event-stream",
          ...apiKey.headers(),
        },
        body: JSON.stringify({
          model: state.model || "karpathy-gpt",
          messages: [...history(), { role: "user", content: question }],
          stream: true,
        }),
        signal: controller.signal,
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new Error(unreachable());
    }
    if (response.status === 401) throw keyNeeded();
    if (!response.ok) throw new Error(await refusal(response));
    turn.root.dataset.state = "streaming";
    turn.status.textContent = "Writing…";
    await readStream(response, turn);
    if (!turn.done) throw new Error("The answer was cut off: the server closed the connection.");
    state.turns.push(turn);
    turn.root.dataset.state = "done";
    turn.status.textContent = "";
    turn.status.hidden = true;
  } catch (error) {
    if (error.name === "AbortError") {
      turn.root.dataset.state = "stopped";
      turn.status.textContent = "Stopped.";
    } else {
      turn.root.dataset.state = "error";
      turn.status.hidden = true;
      turn.answer.hidden = !turn.text;
      turn.error.textContent = error.message;
      turn.error.hidden = false;
      // Unanswered: the question goes back in the box, to ask again (unless a new one is there).
      if (!$("question").value) $("question").value = question;
      if (error instanceof KeyNeeded) $("key").focus();
    }
  } finally {
    turn.answer.setAttribute("aria-busy", "false");
    state.controller = null;
    setBusy(false);
  }
}

// The stream is OpenAI's: `data: {json}` events separated by a blank line, `data: [DONE]` last.
async function readStream(response, turn) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new Error("The connection to the server was lost before the answer finished.");
      }
      if (chunk.done) return;
      buffer += decoder.decode(chunk.value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (handleEvent(block, turn)) return;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function handleEvent(block, turn) {
  const data = block
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).replace(/^ /, ""))
    .join("\n");
  if (!data) return false; // a keep-alive comment
  if (data === "[DONE]") return true;
  let payload;
  try {
    payload = JSON.parse(data);
  } catch {
    throw new Error("The server sent an event this page cannot read.");
  }
  if (payload.error) {
    throw new Error(`The answerer failed: ${payload.error.message || "no reason given"}`);
  }
  const choice = payload.choices && payload.choices[0];
  if (!choice) return false;
  if (Array.isArray(choice.sources)) renderSources(turn, choice.sources);
  if (choice.delta && choice.delta.content) {
    turn.text += choice.delta.content;
    turn.deltas += 1;
    renderAnswer(turn);
  }
  if (choice.finish_reason) turn.done = true;
  return false;
}

// --- rendering: text nodes and links, never markup from the server -----------------------------

function renderAnswer(turn) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of turn.text.matchAll(CITATION)) {
    fragment.append(turn.text.slice(last, match.index));
    const numbers = match[1].split(",").map((part) => Number(part.trim()));
    if (numbers.length === 1 && isCited(turn, numbers[0])) {
      fragment.append(citation(turn, numbers[0], `[${numbers[0]}]`));
    } else {
      fragment.append("[");
      numbers.forEach((n, i) => {
        if (i) fragment.append(", ");
        fragment.append(isCited(turn, n) ? citation(turn, n, String(n)) : String(n));
      });
      fragment.append("]");
    }
    last = match.index + match[0].length;
  }
  fragment.append(turn.text.slice(last));
  turn.answer.replaceChildren(fragment);
  turn.answer.dataset.deltas = String(turn.deltas);
}

function isCited(turn, n) {
  return Number.isInteger(n) && n >= 1 && n <= turn.sources.length;
}

function cardId(turn, n) {
  return `turn-${turn.n}-passage-${n}`;
}

function citation(turn, n, label) {
  const source = turn.sources[n - 1];
  const link = element("a", { class: "cite", href: `#${cardId(turn, n)}` }, label);
  link.setAttribute("aria-label", `passage ${n}: ${source.title || "lecture"}`);
  link.addEventListener("click", (event) => {
    event.preventDefault();
    highlight(document.getElementById(cardId(turn, n)));
  });
  return link;
}

function highlight(card) {
  if (!card) return;
  for (const other of document.querySelectorAll(".passage.highlighted")) {
    other.classList.remove("highlighted");
  }
  card.classList.add("highlighted");
  card.focus({ preventScroll: true });
  card.scrollIntoView({ block: "nearest" });
}

function renderSources(turn, sources) {
  turn.sources = sources;
  turn.list.replaceChildren(...sources.map((source, i) => card(turn, source, i + 1)));
  turn.heading.hidden = sources.length === 0;
  if (turn.text) renderAnswer(turn);
}

function card(turn, source, n) {
  const item = element("li", { class: "passage", id: cardId(turn, n), tabindex: "-1" });
  const title = element("h4", { class: "passage-title" });
  title.append(element("span", { class: "passage-number" }, `[${n}]`), " ",
               String(source.title || "Untitled lecture"));
  const meta = element("p", { class: "passage-meta" });
  if (source.lecture_id) meta.append(`Lecture ${source.lecture_id}`);
  const href = safeLink(source.link);
  if (href) {
    const timed = typeof source.start === "number";
    const label = timed ? `Watch from ${clock(source.start)}` : "Watch the lecture";
    const link = element("a", { href, target: "_blank", rel: "noopener noreferrer" }, label);
    if (meta.childNodes.length) meta.append(" · ");
    meta.append(link);
  }
  const text = element("blockquote", { class: "passage-text" }, String(source.text || ""));
  item.append(title, meta, text);
  return item;
}

function safeLink(link) {
  if (typeof link !== "string" || !link) return null;
  try {
    const url = new URL(link, location.href);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

function clock(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

// --- the form ------------------------------------------------------------------------------------

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").hidden = !busy;
}

function submit() {
  const box = $("question");
  const question = box.value.trim();
  if (state.controller) return;
  if (!question) {
    box.setAttribute("aria-invalid", "true");
    $("ask-hint").textContent = "Type a question first.";
    box.focus();
    return;
  }
  box.removeAttribute("aria-invalid");
  $("ask-hint").textContent = "Enter asks, Shift+Enter starts a new line. "
    + "A follow-up question is read with the conversation before it.";
  box.value = "";
  ask(question);
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
$("question").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
$("stop").addEventListener("click", () => {
  if (state.controller) state.controller.abort();
  $("question").focus();
});
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useKey();
});
$("key-forget").addEventListener("click", () => {
  apiKey.forget();
  showKeyStatus();
  state.model = null;
  loadStatus();
  $("question").focus();
});
$("new").addEventListener("click", () => {
  if (state.controller) state.controller.abort();
  state.turns = [];
  $("conversation").replaceChildren();
  $("question").focus();
});

showKeyStatus();
loadStatus();
$("question").focus();
