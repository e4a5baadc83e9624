"""What the function loads after it is ready, so a cold start is not paid twice.

A cold start is the server's own start (until the Web Adapter's readiness check passes) plus what the
first request needs: the SageMaker client (botocore, its service model and endpoint data) and the
request models (pydantic). Neither is imported on the way to ready: the lifespan starts one thread that
loads both while the Web Adapter is still forwarding the first invocation. A request that needs them
before they are loaded waits for that thread, without holding the event loop
(:meth:`Preload.ready`; the reader thread calls :meth:`Preload.client`, which blocks, off the loop).

Measured by ``make bench-coldstart`` (docs/deploying.md, *Cold start*).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import threading
from typing import TYPE_CHECKING

import anyio.to_thread

from .errors import ApiError
from .settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

#: The modules of the request models (pydantic), loaded with the client.
MODEL_MODULES = ("llm_stream.payloads", "llm_stream.openai_payloads", "llm_stream.responses_api_payloads")
#: Longest wait for the preload (it takes well under a second; a stall, e.g. a credential provider that
#: hangs, must not hold requests without a bound): then 503 ``function_starting``.
PRELOAD_TIMEOUT_SECONDS = 20.0


class Preload:
    def __init__(self, settings: Settings, client: SageMakerRuntimeClient | None = None) -> None:
        self._settings = settings
        self._client = client
        self._done = threading.Event()
        self._started = False
        self._start_lock = threading.Lock()
        self._client_lock = threading.Lock()  # held while the client is created: never by the event loop

    def start(self) -> None:
        """Load in the background (idempotent); the lifespan calls it once the server is ready to listen."""
        with self._start_lock:
            if self._started:
                return
            threading.Thread(target=self._load, name="preload", daemon=True).start()
            self._started = True

    async def ready(self) -> None:
        """Wait, off the event loop, until the models and the client are loaded (at once when they are); a
        caller who goes away stops waiting, and a preload that stalls ends the wait with a 503."""
        if self._done.is_set():
            return
        self.start()
        with anyio.move_on_after(PRELOAD_TIMEOUT_SECONDS):
            await anyio.to_thread.run_sync(self._done.wait, abandon_on_cancel=True)
            return
        raise ApiError(503, "function_starting", "the function is still starting; retry shortly",
                       {"Retry-After": "1"}, detail=f"the preload took longer than {PRELOAD_TIMEOUT_SECONDS:g} s")

    def client(self) -> SageMakerRuntimeClient:
        """The SageMaker client (blocking: call it off the loop, as the reader thread does). When creating it
        failed, each request tries again, so a passing fault (credentials not there yet) does not last."""
        self.start()
        self._done.wait(PRELOAD_TIMEOUT_SECONDS)
        return self._created_client()

    def _created_client(self) -> SageMakerRuntimeClient:
        with self._client_lock:
            if self._client is None:
                from .upstream import create_client

                self._client = create_client(self._settings)
            return self._client

    def _load(self) -> None:
        # The models first, and on their own: a client that cannot be created must not leave them for the
        # first request to import on the event loop.
        for module in MODEL_MODULES:
            with contextlib.suppress(Exception):  # a module that fails to import fails again, in its request
                importlib.import_module(module)
        with contextlib.suppress(Exception):
            from .payloads import generate_payload

            for model_id in self._settings.model_ids:  # each served container's own payload model
                served = self._settings.for_model(model_id)
                if served is not None:
                    generate_payload(served.family)
        try:
            with contextlib.suppress(Exception):  # the requests that need it try again (client())
                self._created_client()
        finally:
            self._done.set()
            if not gc.isenabled():  # the server started with collection off (serve.py): the start is over
                gc.freeze()
                gc.enable()
        if self._settings.can("grammar"):  # last: only structured output and tools need it
            with contextlib.suppress(Exception):
                from .schema_rules import warm_up

                warm_up()
