// Streams an answer from this function and shows each token as it arrives: a raw prompt through
// POST / (Accept: text/event-stream), or a multi-turn chat through /v1/chat/completions (stream: true).
// Text from the network is only ever inserted as text nodes, never parsed as HTML.
"use strict";

const IAM_HINT = "This function URL uses IAM auth (HTTP 403): a browser cannot sign requests with SigV4. " +
  "Use the command-line client (python -m stream_client), or deploy with -c auth=none to serve this page " +
  "publicly (read the warning in docs/security.md first).";

const KEY_HINT = "This function needs an API key (HTTP 401): enter the key its operators issued you in the " +
  "API key field. It stays in this tab only (sessionStorage), never in the URL.";
const KEY_STORAGE = "llm-stream-api-key";

const $ = (id) => document.getElementById(id);
let controller = null;
let model = null;          // the deployed model's id, from v1/models (chat mode)
const history = [];        // the chat so far: {role, content}

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

// The model to ask: the one picked, or the only one the key may call (undefined before the list is loaded:
// the deployment's default, as POST / takes it).
function chosenModel() { return $("model").options.length ? $("model").value : undefined; }

function payload() {
  const parameters = { max_new_tokens: Number($("max-new-tokens").value) };
  if ($("temperature").value !== "") parameters.temperature = Number($("temperature").value);
  return { inputs: $("prompt").value, parameters, model: chosenModel() };
}

// An empty temperature means greedy in both modes (the chat API's own default would sample).
function chatPayload() {
  const temperature = $("temperature").value === "" ? 0 : Number($("temperature").value);
  return { model: chosenModel() || model, messages: history, max_tokens: Number($("max-new-tokens").value),
    temperature, stream: true };
}

function chatting() { return $("mode").value === "chat"; }

function showConversation() {
  const list = $("conversation");
  list.replaceChildren(...history.map((turn) => {
    const item = document.createElement("li");
    item.className = turn.role;
    item.textContent = turn.content;
    return item;
  }));
  list.hidden = !chatting() || history.length === 0;
}

function setMode() {
  $("new-chat").hidden = !chatting();
  $("prompt-label").textContent = chatting() ? "Your message" : "Prompt";
  showConversation();
}

// What each streamed item means, in either API: {text} for a token, {done}, or {error}.
function interpret(kind, data) {
  if (!chatting()) {
    const message = JSON.parse(data);
    if (kind === "token") return { text: message.text };
    if (kind === "done") return { done: message.finish_reason };
    if (kind === "error") return { error: describe(message) };
    return {};
  }
  if (data === "[DONE]") return {};
  const chunk = JSON.parse(data);
  if (chunk.error) return { error: describe({ ...chunk.error, type: chunk.error.code || chunk.error.type }) };
  const choice = (chunk.choices || [])[0];
  if (!choice) return {};
  if (choice.finish_reason) return { done: choice.finish_reason };
  return choice.delta && choice.delta.content ? { text: choice.delta.content } : {};
}

// "type: message (request id)": the function's errors carry the id its operators can look up.
function describe(error) {
  return error.request_id ? `${error.type}: ${error.message} (request ${error.request_id})`
                          : `${error.type}: ${error.message}`;
}

// Headers for every call to the function: the API key, when the deployment needs one and it was given.
function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { authorization: `Bearer ${key}` } : {};
}

function showKeyField() { $("key-row").hidden = false; }

// Scale to zero: while the model wakes the function answers 503 model_waking_up with Retry-After; the
// page waits (doubling from 5 s, at most 60 s, never past Retry-After) and tries again, for up to 15 minutes.
const WAKE_UP_LIMIT_MS = 15 * 60 * 1000;

// Seconds the function asks a waking model's callers to wait, or null for any other answer.
async function wakingUp(response, signal) {
  if (response.status !== 503) return null;
  let body = null;
  try { body = await response.clone().json(); } catch (_) { body = null; }
  if (signal.aborted) throw new DOMException("Stopped while waiting", "AbortError");
  const error = body && body.error;
  // POST / says {type: "model_waking_up"}; the OpenAI routes {type: "server_error", code: "model_waking_up"}.
  if (!error || (error.type !== "model_waking_up" && error.code !== "model_waking_up")) return null;
  const seconds = Number(response.headers.get("retry-after"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds : 60;
}

function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const stopped = () => reject(new DOMException("Stopped while waiting", "AbortError"));
    if (signal.aborted) { stopped(); return; }
    const onAbort = () => { clearTimeout(timer); stopped(); };
    const timer = setTimeout(() => { signal.removeEventListener("abort", onAbort); resolve(); }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

async function httpError(response) {
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  let error = body && body.error;
  if (error && error.code) error = { ...error, type: error.code };  // OpenAI's shape
  if (response.status === 401) {
    showKeyField();
    return `${KEY_HINT} ${error ? describe(error) : ""}`.trim();
  }
  if (error) return `HTTP ${response.status}: ${describe(error)}`;
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
  $("asked").hidden = chatting();
  $("send").disabled = true;
  $("stop").disabled = false;
  controller = new AbortController();
  let started = performance.now();
  let firstAt = null, tokens = 0;
  setStatus("Waiting for the first token…");
  let answered = false;
  try {
    let url = ".", body;
    if (chatting()) {
      if (model === null) {
        const models = await fetch("v1/models", { headers: authHeaders(), signal: controller.signal });
        if (!models.ok) {
          showError(await httpError(models));
          setStatus("Failed.");
          return;
        }
        const listed = (await models.json()).data;
        if (!listed.length) {
          showError("This API key may call none of the models served here: ask the operators for access.");
          setStatus("Failed.");
          return;
        }
        model = listed[0].id;
      }
      history.push({ role: "user", content: $("prompt").value });
      showConversation();
      url = "v1/chat/completions";
      body = chatPayload();
    } else {
      body = payload();
    }
    const waitingSince = performance.now();
    let response;
    for (let tries = 0; ; tries += 1) {
      started = performance.now();
      response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "accept": "text/event-stream", ...authHeaders() },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      const retryAfter = await wakingUp(response, controller.signal);
      const left = WAKE_UP_LIMIT_MS - (performance.now() - waitingSince);
      if (retryAfter === null || left <= 0) break;
      const seconds = Math.max(1, Math.round(Math.min(5 * 2 ** Math.min(tries, 10), 60, retryAfter, left / 1000)));
      setStatus(`The model is starting (scaled to zero while idle), retrying in ${seconds} s…`);
      await pause(seconds * 1000, controller.signal);
      setStatus("Waiting for the first token…");
    }
    if (!response.ok) {
      showError(await httpError(response));
      setStatus("Failed.");
      return;
    }
    for await (const { event: kind, data } of events(response.body)) {
      const item = interpret(kind, data);
      if (item.text !== undefined) {
        if (firstAt === null) firstAt = performance.now();
        tokens += 1;
        output.append(document.createTextNode(item.text));
        setStatus(stats(started, firstAt, tokens));
      } else if (item.done !== undefined) {
        answered = true;
        setStatus(`Done: ${stats(started, firstAt, tokens)}, finish: ${item.done}`);
      } else if (item.error !== undefined) {
        showError(item.error);
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
    if (chatting()) {
      if (answered) {  // the answer joins the conversation; a failed turn is taken back
        history.push({ role: "assistant", content: output.textContent });
        output.textContent = "";
        $("prompt").value = "";
      } else if (history.length && history[history.length - 1].role === "user") {
        history.pop();
      }
      showConversation();
    }
    controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

// The models this caller may use (v1/models): a choice only where there are several. Quiet on failure (a key
// not yet entered): the send that follows says what is wrong.
async function loadModels() {
  try {
    const answer = await fetch("v1/models", { headers: authHeaders() });
    if (!answer.ok) return;
    const ids = (await answer.json()).data.map((entry) => entry.id);
    model = null;  // chat mode asks for the list again: it may differ for another key
    const select = $("model");
    const kept = select.value;
    select.replaceChildren(...ids.map((id) => {
      const option = document.createElement("option");
      option.value = id;
      option.textContent = id;
      return option;
    }));
    if (ids.includes(kept)) select.value = kept;
    $("model-row").hidden = ids.length < 2;
  } catch (_) { /* offline: the send that follows says so */ }
}

// The server says which auth it uses (/healthz needs no key): api_key shows the key field.
async function checkAuth() {
  $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  try {
    const health = await (await fetch("healthz")).json();
    if (health.auth === "api_key") showKeyField();
  } catch (_) { /* an older function, or offline: a 401 shows the field anyway */ }
}

document.addEventListener("DOMContentLoaded", () => {
  checkAuth().then(loadModels);
  $("api-key").addEventListener("input", () => sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim()));
  $("api-key").addEventListener("change", loadModels);  // a key may see other models
  $("model").addEventListener("change", () => { history.length = 0; showConversation(); });  // a new chat
  $("ask").addEventListener("submit", send);
  $("mode").addEventListener("change", setMode);
  $("new-chat").addEventListener("click", () => { history.length = 0; showConversation(); });
  $("stop").addEventListener("click", () => controller && controller.abort());
});
