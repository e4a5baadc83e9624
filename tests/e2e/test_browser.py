"""The browser page in real headless Chromium (Debian's package, driven by Playwright) against the real function."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from llm_stream.key_limits import KeyLimits
from sagemaker_emulator import EmulatorConfig, EmulatorServer, Fault
from tests import ROOT
from tests.helpers.key_tables import table_admin, write_key_file
from tests.helpers.servers import TEST_COMPONENT, component_copies, scaled_to_zero, several_models
from tests.helpers.waiting import wait_until as poll

pytestmark = pytest.mark.clients

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is missing: `make test` installs Debian's chromium package"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))  # uncaught script errors
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" and (
        "Content Security Policy" in message.text or "404" in message.text) else None)
    yield page
    context.close()
    assert not errors, errors


def wait_until(page, expression: str, timeout: float = 20.0) -> None:
    """Poll from outside the page: the page's CSP forbids the eval that wait_for_function(str) needs."""
    poll(lambda: page.evaluate(expression), expression, timeout)


@pytest.fixture
def slow_emulator():
    with EmulatorServer(EmulatorConfig(ttft_ms=50, token_ms=40)) as emulator:
        yield emulator


def output_length(page) -> int:
    return page.evaluate("document.getElementById('output').textContent.length")


def ask(page, prompt: str, max_new_tokens: int = 256, temperature: str = "") -> None:
    page.fill("#prompt", prompt)
    page.fill("#max-new-tokens", str(max_new_tokens))
    page.fill("#temperature", temperature)
    page.click("#send")


def test_page_is_served_with_a_strict_content_security_policy(function) -> None:
    response = httpx.get(function.url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "<script src=\"page.js\"" in response.text
    assert "http" not in response.text.split("<body>")[0]
    assert httpx.get(function.url + "/page.js").headers["content-type"].startswith("text/javascript")


def test_answer_grows_while_the_model_generates(page, slow_emulator, start_function) -> None:
    function = start_function(slow_emulator)
    page.goto(function.url + "/")
    ask(page, "我该如何建立一个网站?", max_new_tokens=40)
    wait_until(page, "document.getElementById('output').textContent.length > 0")
    first = output_length(page)
    (received,) = slow_emulator.requests
    assert not received.finished.is_set(), "the page showed text only after generation had ended"
    wait_until(page, f"document.getElementById('output').textContent.length > {first}")
    assert not received.finished.is_set()
    wait_until(page, "document.getElementById('status').textContent.startsWith('Done')")
    assert page.text_content("#output").startswith("建立网站可以是一个复杂的过程")
    status = page.text_content("#status")
    assert "TTFT" in status
    assert "40 tokens" in status
    assert "tokens/s" in status
    assert "finish: length" in status
    assert page.is_hidden("#error")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-answer.png"), full_page=True)


def test_stop_halts_the_stream_and_the_generation(page, slow_emulator, start_function) -> None:
    function = start_function(slow_emulator)
    page.goto(function.url + "/")
    ask(page, "How do I build a website?")
    wait_until(page, "document.getElementById('output').textContent.length > 10")
    page.click("#stop")
    wait_until(page, "document.getElementById('status').textContent.startsWith('Stopped')")
    stopped_at = output_length(page)
    time.sleep(0.4)  # ten token intervals: nothing more may arrive
    assert output_length(page) == stopped_at
    (received,) = slow_emulator.requests
    assert received.final_outcome() == "client_disconnected"
    assert page.is_enabled("#send")
    assert page.is_disabled("#stop")


def test_mid_stream_fault_is_shown(page, function, emulator) -> None:
    emulator.inject(Fault(kind="model_stream_error", after_tokens=3))
    page.goto(function.url + "/")
    ask(page, "How do I build a website?")
    page.wait_for_selector("#error:not([hidden])")
    shown = page.text_content("#error") or ""
    assert shown.startswith("ModelStreamError: the model failed while generating (request ")
    assert page.text_content("#output") == "Here is a"
    assert page.text_content("#status").startswith("Failed after")


def test_http_error_message_is_shown(page, function, emulator) -> None:
    page.goto(function.url + "/")
    ask(page, "Hello", max_new_tokens=5000)
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error").startswith("HTTP 422: validation_error: `parameters.max_new_tokens` is 5000")
    assert emulator.requests == []


def test_iam_protected_url_is_explained(page, function) -> None:
    page.goto(function.url + "/")
    page.route(function.url + "/", lambda route: route.fulfill(
        status=403, content_type="application/json", body='{"Message":"Forbidden"}')
        if route.request.method == "POST" else route.continue_())
    ask(page, "Hello")
    page.wait_for_selector("#error:not([hidden])")
    assert "uses IAM auth" in page.text_content("#error")
    assert "auth=none" in page.text_content("#error")


def test_markup_in_a_prompt_is_shown_as_text(page, function) -> None:
    page.goto(function.url + "/")
    prompt = "<script>window.injected = 1</script><img src=x onerror=\"window.injected = 2\">"
    ask(page, prompt, max_new_tokens=3)
    wait_until(page, "document.getElementById('status').textContent.startsWith('Done')")
    assert page.text_content("#asked") == prompt
    assert page.evaluate("window.injected") is None
    assert page.evaluate("document.querySelectorAll('main script, main img').length") == 0


def test_chat_mode_holds_a_multi_turn_conversation(page, function, emulator) -> None:
    page.goto(function.url + "/")
    page.select_option("#mode", "chat")
    ask(page, "How do I build a website?", max_new_tokens=6)
    wait_until(page, "document.querySelectorAll('#conversation li').length === 2")
    first_answer = page.text_content("#conversation li.assistant")
    assert first_answer
    assert page.text_content("#status").startswith("Done")
    ask(page, "And then?", max_new_tokens=4)
    wait_until(page, "document.querySelectorAll('#conversation li').length === 4")
    turns = page.eval_on_selector_all("#conversation li", "items => items.map(i => [i.className, i.textContent])")
    assert [role for role, _ in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0][1] == "How do I build a website?"
    sent = emulator.requests[-1].json()
    assert sent["inputs"] == f"User: How do I build a website?\nAssistant: {first_answer}\nUser: And then?\nAssistant:"
    assert sent["parameters"]["do_sample"] is False  # an empty temperature is greedy here too
    page.click("#new-chat")
    assert page.eval_on_selector_all("#conversation li", "items => items.length") == 0


def test_an_api_key_deployment_asks_for_the_key_and_keeps_it_in_the_tab(
        page, emulator, start_function, tmp_path: Path) -> None:
    key = "lsk-browser-test-key"
    function = start_function(emulator, auth_mode="api_key",
                              api_keys_file=str(write_key_file(tmp_path / "keys.json", browser=key)))
    page.goto(function.url + "/")
    page.wait_for_selector("#key-row:not([hidden])")  # /healthz said auth=api_key
    ask(page, "Hello", max_new_tokens=3)
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error").startswith("This function needs an API key (HTTP 401)")
    assert "missing_api_key" in page.text_content("#error")
    assert emulator.requests == []

    page.fill("#api-key", key)
    page.click("#send")
    wait_until(page, "document.getElementById('status').textContent.startsWith('Done')")
    assert page.is_hidden("#error")
    page.select_option("#mode", "chat")  # v1/models and the chat route take the key too
    ask(page, "Hi", max_new_tokens=3)
    wait_until(page, "document.querySelectorAll('#conversation li.assistant').length === 1")
    assert key not in page.url
    page.reload()
    assert page.input_value("#api-key") == key  # the tab's sessionStorage, not a cookie or the URL
    assert page.evaluate("document.cookie") == ""


def test_a_key_past_its_limit_is_told_which_limit_and_when_it_resets(
        page, emulator, start_function, key_table: str) -> None:
    key, _ = table_admin(key_table).create("browser", None, KeyLimits(rpm=1))
    function = start_function(emulator, auth_mode="api_key", api_keys_table=key_table)
    if 60 - time.time() % 60 < 5:  # both requests in one minute
        time.sleep(60 - time.time() % 60 + 0.1)
    page.goto(function.url + "/")
    page.wait_for_selector("#key-row:not([hidden])")
    page.fill("#api-key", key)
    ask(page, "Hello", max_new_tokens=3)
    wait_until(page, "document.getElementById('status').textContent.startsWith('Done')")
    ask(page, "Hello again", max_new_tokens=3)
    page.wait_for_selector("#error:not([hidden])")
    shown = page.text_content("#error")
    assert shown.startswith("HTTP 429: rate_limit_exceeded: this key made 1 requests this minute, its rpm limit (1); "
                            "it resets in ")
    assert len(emulator.requests) == 1


def test_other_deployments_show_no_key_field(page, function) -> None:
    page.goto(function.url + "/")
    wait_until(page, "document.readyState === 'complete'")
    page.wait_for_timeout(200)  # the page has asked /healthz
    assert page.is_hidden("#key-row")


def test_a_model_scaled_to_zero_is_waited_for_and_the_wait_can_be_stopped(page, start_function) -> None:
    with scaled_to_zero(warm_up_seconds=1.0) as emulator:
        function = start_function(emulator, inference_component_name=TEST_COMPONENT, wake_up_seconds=60)
        page.goto(function.url + "/")
        ask(page, "Hello", max_new_tokens=5)
        wait_until(page, "document.getElementById('status').textContent.startsWith('The model is starting')")
        assert page.text_content("#status") == "The model is starting (scaled to zero while idle), retrying in 5 s…"
        assert page.is_hidden("#error")
        page.click("#stop")
        wait_until(page, "document.getElementById('status').textContent.startsWith('Stopped')")
        assert page.is_enabled("#send")
        # The first refusal started the wake-up: once the copy is up, it serves.
        poll(lambda: component_copies(emulator) == 1, "the model's copy to come up")
        ask(page, "Hello", max_new_tokens=5)
        wait_until(page, "document.getElementById('status').textContent.startsWith('Done')")
        assert page.is_hidden("#error")
        assert [request.outcome for request in emulator.requests] == ["error:ValidationError", "completed"]


def test_chat_mode_waits_for_a_model_scaled_to_zero_too(page, start_function) -> None:
    """The OpenAI route says {type: server_error, code: model_waking_up}: the page waits on that as well."""
    with scaled_to_zero(warm_up_seconds=1.0) as emulator:
        function = start_function(emulator, inference_component_name=TEST_COMPONENT, wake_up_seconds=2)
        page.goto(function.url + "/")
        page.select_option("#mode", "chat")
        ask(page, "Hello", max_new_tokens=5)
        wait_until(page, "document.getElementById('status').textContent.startsWith('The model is starting')")
        wait_until(page, "document.getElementById('status').textContent.startsWith('Done')", timeout=30)
        assert page.is_hidden("#error")


def test_the_page_offers_the_models_served_and_sends_the_one_picked(page, start_function) -> None:
    falcon, mistral = "huggingface-llm-falcon-7b-instruct-bf16", "huggingface-llm-mistral-7b-instruct"
    emulator, served = several_models(f"{falcon},{mistral}")
    with emulator:
        function = start_function(emulator, **served)
        page.goto(function.url + "/")
        wait_until(page, "!document.getElementById('model-row').hidden")
        assert page.eval_on_selector_all("#model option", "options => options.map(o => o.value)") == [falcon, mistral]
        page.select_option("#model", mistral)
        ask(page, "Hi", max_new_tokens=3)  # the raw prompt (POST /) names it
        wait_until(page, "document.getElementById('status').textContent.startsWith('Done')")
        page.select_option("#mode", "chat")
        ask(page, "Hi", max_new_tokens=3)  # and the chat
        wait_until(page, "document.querySelectorAll('#conversation li').length === 2")
        assert [r.headers["X-Amzn-SageMaker-Inference-Component"] for r in emulator.requests] == [mistral, mistral]
        assert emulator.requests[-1].json()["inputs"] == "[INST] Hi [/INST]"


def test_one_model_offers_no_choice(page, function) -> None:
    page.goto(function.url + "/")
    poll(lambda: page.evaluate("document.getElementById('model').options.length") == 1, "the models loaded")
    assert page.evaluate("document.getElementById('model-row').hidden")
