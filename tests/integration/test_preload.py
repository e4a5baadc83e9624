"""The cold start's shape: only the server on the way to ready; what loads after it, and when it fails or stalls."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from tests import ROOT
from tests.helpers.key_tables import write_key_file
from tests.helpers.logs import LogRecords
from tests.helpers.servers import AppServer, point_boto3_at

#: What a request needs but the way to ready must not load (``preload.py``, docs/deploying.md, *Cold start*).
LOADED_AFTER_READY = ("pydantic", "botocore", "boto3", "urllib3", "fastapi", "llm_stream.payloads",
                      "llm_stream.openai_payloads", "llm_stream.families.tgi", "llm_stream.families.lmi")


@pytest.mark.parametrize("auth", ["none", "api_key"])
def test_the_way_to_ready_loads_the_server_only(tmp_path, auth: str) -> None:
    """In a fresh interpreter: import the server, build the app as serve.py does, run its lifespan's start."""
    keys = write_key_file(tmp_path / "keys.json", team="k" * 40)
    script = textwrap.dedent(f"""
        import gc, json, sys
        import llm_stream.serve
        from llm_stream.app import create_app
        from llm_stream.settings import Settings
        create_app(Settings(endpoint_name="e", auth_mode="{auth}",
                            api_keys_file="{keys if auth == "api_key" else ""}"))
        print(json.dumps({{"loaded": sorted(m for m in {LOADED_AFTER_READY!r} if m in sys.modules),
                           "gc": gc.isenabled()}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT / "lambda", capture_output=True, text=True,
                            check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "lambda")},
                            timeout=60)
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    assert report["gc"] is True  # only running it as the server turns collection off (until the preload ends)


def test_a_client_that_cannot_be_created_fails_its_requests_and_is_tried_again(
    emulator, request_logs: LogRecords, monkeypatch
) -> None:
    from llm_stream.app import create_app
    from llm_stream.settings import Settings

    point_boto3_at(monkeypatch, emulator.url)
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):  # botocore refuses to create a client for it
        monkeypatch.setenv(name, "not a region")
    settings = Settings(endpoint_name="test-endpoint", upstream_max_attempts=1)
    with AppServer(create_app(settings), settings) as function:
        failed = httpx.post(function.url, json={"inputs": "hi", "parameters": {"max_new_tokens": 2}}, timeout=30)
        assert failed.status_code == 500
        assert failed.json()["error"]["type"] == "internal_error"
        (line,) = request_logs.wait_for(1)
        assert "InvalidRegionError" in line["error_detail"]
        for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):  # the fault passes: the next request creates it
            monkeypatch.setenv(name, "us-east-1")
        served = httpx.post(function.url, json={"inputs": "hi", "parameters": {"max_new_tokens": 2}}, timeout=30)
    assert served.status_code == 200
    assert len(emulator.requests) == 1


def test_a_stalled_preload_ends_the_wait_with_a_503(start_function, emulator, tmp_path, monkeypatch) -> None:
    from llm_stream import preload

    (tmp_path / "stalls_on_import.py").write_text("import time\ntime.sleep(2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(preload, "MODEL_MODULES", ("stalls_on_import", *preload.MODEL_MODULES))
    monkeypatch.setattr(preload, "PRELOAD_TIMEOUT_SECONDS", 0.5)
    function = start_function(emulator)
    started = time.monotonic()
    response = httpx.post(function.url, json={"inputs": "hi"}, timeout=30)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "function_starting"
    assert response.headers["retry-after"] == "1"
    assert time.monotonic() - started < 2
    assert httpx.get(f"{function.url}/healthz").status_code == 200  # the loop was never held
    deadline = time.monotonic() + 15  # once the stalled import is over (2 s), requests are served
    while (status := httpx.post(function.url, json={"inputs": "hi", "parameters": {"max_new_tokens": 2}},
                                timeout=30).status_code) == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200
