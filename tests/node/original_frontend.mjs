// The original front-end's two requests (rlancemartin/karpathy-gpt, nextjs/pages/index.tsx),
// made from Node with the package it used, @microsoft/fetch-event-source: a FormData body with
// the question as `query`, POSTed to /karpathy-docs and to /karpathy-stream.
//
//   node original_frontend.mjs http://127.0.0.1:8000 "What is makemore?"
//
// Prints one JSON object: {"docs": [{event, data}...], "stream": [{event, data}...]}, each
// event as fetch-event-source handed it to onmessage. Exits 1 on any error (no retries).
import { fetchEventSource } from "@microsoft/fetch-event-source";

// The package is written for browsers: it listens for `visibilitychange` on `document` and
// calls `window.setTimeout`/`window.clearTimeout`. Node has neither global; these stand-ins do
// nothing (openWhenHidden keeps the page-hidden logic off).
globalThis.window ??= globalThis;
globalThis.document ??= { hidden: false, addEventListener() {}, removeEventListener() {} };

const [base, question] = process.argv.slice(2);

async function read(path) {
  const body = new FormData();
  body.append("query", question);
  const events = [];
  await fetchEventSource(base + path, {
    method: "POST",
    headers: { Accept: "text/event-stream", Connection: "keep-alive" }, // as the original
    body,
    openWhenHidden: true,
    fetch: globalThis.fetch,
    onmessage: (event) => events.push({ event: event.event, data: event.data }),
    onerror: (error) => {
      throw error; // fail once: by default it would retry forever
    },
  });
  return events;
}

try {
  const [docs, stream] = await Promise.all([read("/karpathy-docs"), read("/karpathy-stream")]);
  process.stdout.write(JSON.stringify({ docs, stream }));
} catch (error) {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
}
