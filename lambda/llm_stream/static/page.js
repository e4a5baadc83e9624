// Streams an answer from this function (POST /, Accept: text/event-stream) and shows each token as it
// arrives. Text from the network is only ever inserted as text nodes, never parsed as HTML.
"use strict";

const IAM_HINT = "This function URL uses IAM auth (HTTP 403): a browser cannot sign requests with SigV4. " +
  "Use the command-line client (python -m stream_client), or deploy with -c auth=none to serve this page " +
  "publicly (read the README's warning first).";

const $ = (id) => document.getElementById(id);
let controller = null;

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

function payload() {
  const parameters = { max_new_tokens: Number($("max-new-tokens").value) };
  if ($("temperature").value !== "") parameters.temperature = Number($("temperature").value);
  return { inputs: $("prompt").value, parameters };
}

// "type: message (request id)": the function's errors carry the id its operators can look up.
function describe(error) {
  return error.request_id ? `${error.type}: ${error.message} (request ${error.request_id})`
                          : `${error.type}: ${error.message}`;
}

async function httpError(response) {
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (body && body.error) return `HTTP ${response.status}: ${describe(body.error)}`;
  if (response.status === 403) return IAM_HINT;  // the function URL's own refusal, before the function
  if (body && body.Message) return `HTTP ${response.status}: ${body.Message}`;
  return `HTTP ${response.status} ${response.statusText}`;
}

// Yields {event, data} for each server-sent event in the response body.
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", event = "message", data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (data.length) yield { event, data: data.join("\n") };
        event = "message"; data = [];
      } else if (line.startsWith("event:")) {
        event = line.slice(6).trim();
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
    }
  }
}

function stats(started, firstAt, tokens) {
  const now = performance.now();
  const ttft = firstAt === null ? "…" : `${Math.round(firstAt - started)} ms`;
  const rate = firstAt !== null && tokens > 1 && now > firstAt ?
    `, ${((tokens - 1) / ((now - firstAt) / 1000)).toFixed(1)} tokens/s` : "";
  return `TTFT ${ttft}, ${tokens} tokens${rate}`;
}

async function send(event) {
  event.preventDefault();
  const output = $("output");
  output.textContent = "";
  $("error").hidden = true;
  $("asked").textContent = $("prompt").value;
  $("asked").hidden = false;
  $("send").disabled = true;
  $("stop").disabled = false;
  controller = new AbortController();
  const started = performance.now();
  let firstAt = null, tokens = 0;
  setStatus("Waiting for the first token…");
  try {
    const response = await fetch(".", {
      method: "POST",
      headers: { "content-type": "application/json", "accept": "text/event-stream" },
      body: JSON.stringify(payload()),
      signal: controller.signal,
    });
    if (!response.ok) {
      showError(await httpError(response));
      setStatus("Failed.");
      return;
    }
    for await (const { event: kind, data } of events(response.body)) {
      const message = JSON.parse(data);
      if (kind === "token") {
        if (firstAt === null) firstAt = performance.now();
        tokens += 1;
        output.append(document.createTextNode(message.text));
        setStatus(stats(started, firstAt, tokens));
      } else if (kind === "done") {
        setStatus(`Done: ${stats(started, firstAt, tokens)}, finish: ${message.finish_reason}`);
      } else if (kind === "error") {
        showError(describe(message));
        setStatus(`Failed after ${stats(started, firstAt, tokens)}`);
      }
    }
  } catch (error) {
    if (error.name === "AbortError") {
      setStatus(`Stopped: ${stats(started, firstAt, tokens)}`);
    } else {
      showError(`Request failed: ${error.message}`);
      setStatus("Failed.");
    }
  } finally {
    controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask").addEventListener("submit", send);
  $("stop").addEventListener("click", () => controller && controller.abort());
});
