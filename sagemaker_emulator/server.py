"""HTTP server that answers ``InvokeEndpointWithResponseStream`` like SageMaker in front of a model container:
TGI (``tgi.py``) or DJL/LMI (``lmi.py``), as ``EmulatorConfig.container`` says.

Real HTTP/1.1 with chunked transfer encoding, real event-stream frames, the
service's error shapes (so botocore raises the same exceptions it raises
against AWS), fault knobs, and a record of every request received.

Admin routes (not part of the SageMaker API):

* ``GET /_emulator/health``: readiness.
* ``GET /_emulator/requests``: what was received, with each outcome.
* ``POST /_emulator/faults`` ``{"faults": [{"kind": ..., ...}]}`` / ``DELETE /_emulator/faults``.
* ``GET /_emulator/inference-component``, ``POST`` ``{"copies": N}``: the copies of an endpoint whose model
  is an inference component (``EmulatorConfig.inference_component``; ``capacity.py``).

The admin routes answer only tools on this machine: the Host must be a loopback name (a page whose DNS
name was rebound to loopback sends its own), a browser's ``Origin`` must be loopback too, and a POST must
say JSON (which a cross-site page cannot send without a CORS preflight, which this server never grants).

What the emulator keeps of the requests it received is bounded (:data:`KEPT_REQUESTS` records, their bodies
within :data:`KEPT_BODY_BYTES`), and a body larger than :data:`MAX_BODY_BYTES` is refused before it is read.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any, Protocol

from . import eventstream, lmi, tgi
from .capacity import Admission, Capacity
from .faults import GENERATION_FAULTS, PRE_STREAM_FAULTS, Fault
from .textgen import EOS, Token

#: The containers the emulator can stand in for. Each module has the same names: ``STREAM_CONTENT_TYPE``,
#: ``parse_request``, ``refusal``, ``generate`` and an ``EventRenderer`` (a :class:`Renderer`).
CONTAINERS: dict[str, ModuleType] = {"tgi": tgi, "lmi": lmi}


class Renderer(Protocol):
    """How one request's answer is written in its container's format."""

    request: tgi.GenerationRequest

    def token(self, index: int, token: Token, finish_reason: str | None) -> bytes: ...
    def end(self) -> bytes: ...
    def error(self, message: str, error_type: str) -> bytes: ...
    def whole_body(self) -> tuple[bytes, int]: ...

log = logging.getLogger("sagemaker_emulator")

#: The emulator's own bound on a request body (InvokeEndpoint's payload quota is 6 MB; the service's own
#: answer beyond it is not emulated): 413 before a byte of it is read.
MAX_BODY_BYTES = 6 * 1024 * 1024
#: The requests kept for tests and ``GET /_emulator/requests`` (the oldest go first), and the bytes of bodies
#: among them (older bodies are dropped first; their records stay, with ``body_dropped``).
KEPT_REQUESTS = 10_000
KEPT_BODY_BYTES = 32 * 1024 * 1024
_LOOPBACK_HOST = re.compile(r"(?:localhost|127(?:\.[0-9]{1,3}){3}|\[::1\])(?::[0-9]{1,5})?", re.IGNORECASE)
#: How botocore sends ``InferenceComponentName`` (the service model's header location).
COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
_INVOKE_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/(?P<operation>invocations|invocations-response-stream)$")
_DISCONNECTED = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


@dataclass(frozen=True)
class EmulatorConfig:
    ttft_ms: float = 300.0
    token_ms: float = 30.0
    #: Endpoint names served; ``None`` serves any name.
    endpoints: frozenset[str] | None = None
    max_total_tokens: int = 2048
    #: Cut events into several ``PayloadPart`` frames at unaligned offsets, as the service does.
    split_parts: bool = True
    account: str = "123456789012"
    region: str = "us-east-1"
    #: Whether the model's tokenizer ships a chat template; without one TGI refuses Messages payloads.
    chat_template: bool = True
    #: The model container behind the endpoint (a key of :data:`CONTAINERS`): its request rules, stream format
    #: and errors.
    container: str = "tgi"
    #: The container's version (``None``: the one its module stands for, TGI 2.4.0 or LMI 0.28.0): TGI before
    #: 1.4.1 ignores ``grammar``, before 2.3.0 its stream's details carry no ``input_length``.
    container_version: str | None = None
    #: Scale to zero: the endpoint hosts its model as this inference component (``None``: as a model).
    inference_component: str | None = None
    #: Its copies at start (0: scaled to zero).
    initial_copies: int = 1
    #: Seconds from the first refused invocation (what the scale-out alarm reacts to) until a copy serves.
    warm_up_seconds: float = 5.0
    #: Seconds without an invocation after which the copies go back to zero (the idle alarm); ``None``: never.
    idle_seconds: float | None = None
    #: Several models on the endpoint: each an inference component with its own container and copies (instead
    #: of ``inference_component`` and the container fields above, which describe the one model otherwise).
    components: tuple[HostedComponent, ...] = ()

    def __post_init__(self) -> None:
        if self.container not in CONTAINERS:
            raise ValueError(f"container {self.container!r}: expected one of {', '.join(CONTAINERS)}")
        names = [component.name for component in self.components]
        if self.components and self.inference_component is not None:
            raise ValueError("give components, or one inference_component, not both")
        if len(set(names)) != len(names):
            raise ValueError(f"components: each name once, got {', '.join(names)}")

    def hosted(self) -> tuple[HostedComponent, ...]:
        """The inference components the endpoint hosts (none: it hosts its model directly)."""
        if self.components or self.inference_component is None:
            return self.components
        return (HostedComponent(self.inference_component, self.container, self.container_version,
                                self.max_total_tokens, self.chat_template, self.initial_copies),)


@dataclass(frozen=True)
class HostedComponent:
    """One inference component: its model's container (family and version), token window and copies at start."""

    name: str
    container: str = "tgi"
    container_version: str | None = None
    max_total_tokens: int = 2048
    chat_template: bool = True
    initial_copies: int = 1

    def __post_init__(self) -> None:
        if self.container not in CONTAINERS:
            raise ValueError(f"component {self.name}: container {self.container!r}: expected one of "
                             f"{', '.join(CONTAINERS)}")
        if self.initial_copies < 0 or self.max_total_tokens < 1:
            raise ValueError(f"component {self.name}: initial_copies >= 0 and max_total_tokens >= 1")

    @classmethod
    def parse(cls, text: str) -> HostedComponent:
        """``NAME=FAMILY[:VERSION[:MAX_TOTAL_TOKENS[:COPIES]]]``, as ``--component`` takes it."""
        name, _, spec = text.partition("=")
        family, version, tokens, copies = ([*spec.split(":"), "", "", ""])[:4]
        if not name or not family:
            raise ValueError(f"{text!r}: expected NAME=FAMILY[:VERSION[:MAX_TOTAL_TOKENS[:COPIES]]]")
        return cls(name, family, version or None, int(tokens or 2048), initial_copies=int(copies or 1))


#: How often the serving loop checks whether it was asked to stop.
STOP_POLL_SECONDS = 0.02


@dataclass
class ReceivedRequest:
    request_id: str
    endpoint: str
    body: bytes
    headers: dict[str, str]
    received_at: float
    outcome: str | None = None
    tokens_sent: int = 0
    #: Wall-clock time (``time.time()``) each token event was written, for latency measurements.
    token_sent_at: list[float] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    #: The body was dropped to keep the emulator's memory bounded (``KEPT_BODY_BYTES``).
    body_dropped: bool = False

    def json(self) -> Any:
        return json.loads(self.body)

    def finish(self, outcome: str) -> None:
        self.outcome = outcome
        self.finished.set()

    def final_outcome(self, timeout: float = 5.0) -> str | None:
        """The outcome once the exchange has ended, or ``None`` if it has not within ``timeout`` seconds.

        A client may read the last byte before the handler records the outcome: wait for it.
        """
        self.finished.wait(timeout)
        return self.outcome if self.finished.is_set() else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "inference_component": self.headers.get(COMPONENT_HEADER),
            "body": self.body.decode("utf-8", "replace"),
            "received_at": self.received_at,
            "outcome": self.outcome,
            "tokens_sent": self.tokens_sent,
            "token_sent_at": self.token_sent_at,
        }


class EmulatorServer:
    """The emulator, started in a background thread; also a context manager."""

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or EmulatorConfig()
        self._lock = threading.Lock()
        self._requests: deque[ReceivedRequest] = deque(maxlen=KEPT_REQUESTS)
        self._bodies: deque[ReceivedRequest] = deque()  # kept requests whose bodies are kept, oldest first
        self._body_bytes = 0
        #: Every request received since the start (or the last reset), including those no longer kept.
        self.received = 0
        self._faults: deque[tuple[Fault, int | None]] = deque()  # (fault, remaining uses or None)
        self.stopping = threading.Event()
        #: Each hosted inference component's copies, by name.
        self.capacities = {component.name: Capacity(component.name, component.initial_copies,
                                                    self.config.warm_up_seconds, self.config.idle_seconds)
                           for component in self.config.hosted()}
        self._components = {component.name: component for component in self.config.hosted()}
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.emulator = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self.serve_forever, name="sagemaker-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        # stop() waits for the loop to look at its flag: look often, so stopping takes milliseconds, not 0.5 s.
        self._httpd.serve_forever(poll_interval=STOP_POLL_SECONDS)

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def capacity(self) -> Capacity | None:
        """The copies of the one inference component the endpoint hosts (``None``: none, or several)."""
        return next(iter(self.capacities.values())) if len(self.capacities) == 1 else None

    def admit(self, named: str | None) -> Admission:
        """An invocation of an endpoint hosting inference components: it must name one of them, with a copy."""
        capacity = self.capacities.get(named or "")
        if capacity is None:
            return Capacity.unknown(named, self.config.account)
        return capacity.admit(named, self.config.account)

    def container_of(self, named: str | None) -> HostedComponent:
        """What answers an invocation: the named component's container, or the endpoint's own model's."""
        config = self.config
        return self._components.get(named or "") or HostedComponent(
            "", config.container, config.container_version, config.max_total_tokens, config.chat_template)

    # -- what tests look at ------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._bodies.clear()
            self._body_bytes = self.received = 0
            self._faults.clear()

    def inject(self, *faults: Fault) -> None:
        """Apply these faults to the next requests, in order (each for ``fault.times`` requests)."""
        with self._lock:
            self._faults.extend((fault, fault.times) for fault in faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} requests, got {len(self.requests)}")
            time.sleep(0.005)
        return self.requests

    # -- used by the handler -----------------------------------------------

    def _record(self, request: ReceivedRequest) -> Fault | None:
        with self._lock:
            if len(self._requests) == KEPT_REQUESTS:  # the oldest record goes, and its body with it
                evicted = self._requests[0]
                if self._bodies and self._bodies[0] is evicted:
                    self._bodies.popleft()
                    self._body_bytes -= len(evicted.body)
            self._requests.append(request)
            self.received += 1
            self._bodies.append(request)
            self._body_bytes += len(request.body)
            while self._body_bytes > KEPT_BODY_BYTES and len(self._bodies) > 1:
                oldest = self._bodies.popleft()
                self._body_bytes -= len(oldest.body)
                oldest.body, oldest.body_dropped = b"", True
            if not self._faults:
                return None
            fault, remaining = self._faults[0]
            if remaining is not None:
                self._faults.popleft()
                if remaining > 1:
                    self._faults.appendleft((fault, remaining - 1))
            return fault


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512
    emulator: EmulatorServer

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that resets its connection is normal traffic; anything else is a bug worth a traceback."""
        if isinstance(sys.exc_info()[1], _DISCONNECTED):
            log.debug("client %s went away", client_address)
            return
        log.exception("error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer
    server_version = "SageMakerRuntimeEmulator"

    #: What answers the invocation being served: its inference component's container, or the endpoint's model's.
    _hosted: HostedComponent | None = None

    @property
    def _container(self) -> ModuleType:
        """The module standing in for the model container answering this invocation."""
        return CONTAINERS[self._hosted.container if self._hosted else self.server.emulator.config.container]

    # -- routing -----------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.startswith("/_emulator/") and not self._admin_allowed():
            return
        if self.path == "/_emulator/health":
            self._send_json(200, {"status": "ok"})
        elif self.path == "/_emulator/requests":
            self._send_json(200, {"requests": [r.to_dict() for r in self.server.emulator.requests]})
        elif self.path.split("?")[0] == "/_emulator/inference-component":
            self._answer_capacity()
        elif self.path == "/_emulator/inference-components":
            self._send_json(200, {"components": [capacity.state() for capacity in
                                                 self.server.emulator.capacities.values()]})
        else:
            self._send_unknown_operation()

    def do_DELETE(self) -> None:
        if not self._admin_allowed():
            return
        if self.path == "/_emulator/faults":
            self.server.emulator.clear_faults()
            self._send_json(200, {"faults": []})
        else:
            self._send_unknown_operation()

    def do_POST(self) -> None:
        admin = self.path.startswith("/_emulator/")
        if admin and not (self._admin_allowed() and self._says_json()):
            return
        body = self._read_body()
        if body is None:
            return
        if self.path == "/_emulator/faults":
            self._set_faults(body)
            return
        if self.path == "/_emulator/inference-component":
            self._answer_capacity(body)
            return
        match = _INVOKE_PATH.match(self.path.split("?", 1)[0])
        if not match:
            self._send_unknown_operation()
            return
        self._invoke(match["name"], body, streaming=match["operation"] == "invocations-response-stream")

    def _read_body(self) -> bytes | None:
        """The body its Content-Length announces; ``None`` once a refusal was sent (the connection then closes)."""
        declared = self.headers.get("Content-Length") or "0"
        if not declared.isascii() or not declared.isdigit():
            self._refuse(400, f"Content-Length {declared[:32]!r} is not a number of bytes")
            return None
        if int(declared) > MAX_BODY_BYTES:
            self._refuse(413, f"the body has {declared[:32]} bytes; the emulator takes at most {MAX_BODY_BYTES}")
            return None
        return self.rfile.read(int(declared))

    def _refuse(self, status: int, message: str) -> None:
        self.close_connection = True
        self._send_json(status, {"message": message}, {"x-amzn-ErrorType": "ValidationError", "Connection": "close"})

    def _admin_allowed(self) -> bool:
        origin = self.headers.get("Origin")
        if _LOOPBACK_HOST.fullmatch(self.headers.get("Host", "")) and (
                origin is None or _LOOPBACK_HOST.fullmatch(origin.partition("://")[2])):
            return True
        self._refuse(403, "the emulator's admin routes answer only tools on this machine (a loopback Host, "
                     "and no foreign Origin)")
        return False

    def _says_json(self) -> bool:
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() == "application/json":
            return True
        self._refuse(415, "send the admin routes JSON (Content-Type: application/json)")
        return False

    def _set_faults(self, body: bytes) -> None:
        try:
            faults = [Fault.from_dict(item) for item in json.loads(body)["faults"]]
        except (ValueError, KeyError, TypeError) as exc:
            self._send_json(400, {"message": f"invalid faults: {exc}"})
            return
        self.server.emulator.inject(*faults)
        self._send_json(200, {"faults": [f.to_dict() for f in faults]})

    def _answer_capacity(self, body: bytes | None = None) -> None:
        """One component's copies, or (with ``body``) set them. Where the endpoint hosts several, ``?name=`` or
        the body's ``"name"`` picks one."""
        emulator = self.server.emulator
        try:
            asked = json.loads(body) if body is not None else {}
            if not isinstance(asked, dict):
                raise TypeError("the body must be a JSON object")
        except (ValueError, TypeError) as exc:
            self._send_json(400, {"message": f"invalid body: {exc}"})
            return
        query = dict(part.partition("=")[::2] for part in self.path.partition("?")[2].split("&") if part)
        named = asked.get("name") or query.get("name")
        capacity = emulator.capacities.get(named) if isinstance(named, str) else emulator.capacity
        if capacity is None:
            known = ", ".join(emulator.capacities)
            self._send_json(404, {"message": f"name one of the endpoint's inference components: {known}" if known
                                  else "this endpoint hosts a model, not an inference component"})
            return
        if body is not None:
            copies = asked.get("copies")
            if not isinstance(copies, int) or isinstance(copies, bool) or copies < 0:
                self._send_json(400, {"message": f"invalid copies: copies must be a whole number >= 0, got "
                                                 f"{copies!r}"})
                return
            capacity.scale_to(copies)
        self._send_json(200, capacity.state())

    # -- InvokeEndpoint and InvokeEndpointWithResponseStream ----------------

    def _invoke(self, endpoint: str, body: bytes, streaming: bool) -> None:
        """SageMaker's checks and faults first, then the container's: its refusal, or its answer."""
        emulator = self.server.emulator
        record = ReceivedRequest(
            request_id=str(uuid.uuid4()),
            endpoint=endpoint,
            body=body,
            headers=dict(self.headers.items()),
            received_at=time.time(),
        )
        fault = emulator._record(record)
        log.info("invoke endpoint=%s bytes=%d fault=%s", endpoint, len(body), fault.kind if fault else None)
        self._hosted = emulator.container_of(self.headers.get(COMPONENT_HEADER))
        if self._answered_by_sagemaker(record, endpoint, fault):
            return
        container, hosted = self._container, self._hosted
        try:
            version = {"version": hosted.container_version} if hosted.container_version else {}
            request = container.parse_request(body, hosted.max_total_tokens, hosted.chat_template, **version)
        except tgi.BodyRejected as rejected:
            self._send_model_error(record, rejected.status, rejected.message, original=rejected.body)
            return
        except tgi.ValidationFailure as failure:
            self._container_refusal(record, failure, streaming)
            return
        if fault and fault.kind == "grammar_not_enforced":
            request.grammar = None  # outlines could not compile it: TGI generates unconstrained
        renderer = container.EventRenderer(request)
        if not streaming:
            self._answer_whole(record, renderer)
        elif not request.stream:
            self._start_stream(record, "application/json")
            self._write_chunk(eventstream.payload_part(renderer.whole_body()[0]))
            self._end_stream(record, "completed")
        else:
            self._answer_streamed(record, request, renderer, fault)

    def _answered_by_sagemaker(self, record: ReceivedRequest, endpoint: str, fault: Fault | None) -> bool:
        """What SageMaker answers before the container sees the request (authentication, the endpoint, an
        inference component's capacity) and the faults injected there; whether it answered."""
        emulator = self.server.emulator
        config = emulator.config
        kind = fault.kind if fault else None
        if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
            self._send_service_error(record, 403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        elif kind == "unknown_endpoint" or (config.endpoints is not None and endpoint not in config.endpoints):
            message = f"Endpoint {endpoint} of account {config.account} not found."
            self._send_service_error(record, 400, "ValidationError", message)
        elif emulator.capacities and not (admission := emulator.admit(self.headers.get(COMPONENT_HEADER))).admitted:
            self._send_service_error(record, 400, "ValidationError", admission.message)
        elif fault and kind == "stall_before_response" and not self._pause(fault.stall_seconds):
            record.finish("server_stopped")
        elif fault and kind == "throttle":
            self._send_service_error(record, 429, "ThrottlingException", fault.message or "Rate exceeded")
        elif fault and kind == "model_error":
            self._send_model_error(record, 500, fault.message or "CUDA error: an illegal memory access was encountered")
        else:
            return False
        return True

    def _container_refusal(self, record: ReceivedRequest, failure: tgi.ValidationFailure, streaming: bool) -> None:
        """The container's own refusal: an ordinary body, a model error, or an error event in the stream."""
        container = self._container
        status, message, event = container.refusal(failure)
        if status == 200 and not streaming:  # the container answers its error as an ordinary body
            self._send_body(record, event)
        elif not (failure.stream and streaming):
            self._send_model_error(record, status, message, error_type="validation")
        else:
            self._start_stream(record, container.STREAM_CONTENT_TYPE)
            self._write_chunk(eventstream.payload_part(event))
            self._end_stream(record, "validation_error")

    def _answer_streamed(self, record: ReceivedRequest, request: tgi.GenerationRequest, renderer: Renderer,
                         fault: Fault | None) -> None:
        self._start_stream(record, self._container.STREAM_CONTENT_TYPE)
        mid_stream_fault = fault if fault and fault.kind not in PRE_STREAM_FAULTS | GENERATION_FAULTS else None
        try:
            outcome = self._stream_tokens(record, request, renderer, mid_stream_fault)
        except _DISCONNECTED:
            record.finish("client_disconnected")
            self.close_connection = True
            return
        if outcome == "dropped":
            record.finish("fault:drop_connection")
            return
        self._end_stream(record, outcome)

    def _answer_whole(self, record: ReceivedRequest, renderer: Renderer) -> None:
        """InvokeEndpoint: the container's whole answer as the HTTP body (a streamed one, buffered)."""
        body, record.tokens_sent = renderer.whole_body()
        stream_type = self._container.STREAM_CONTENT_TYPE
        self._send_body(record, body, stream_type if renderer.request.stream else "application/json")

    def _send_body(self, record: ReceivedRequest, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-Amzn-Invoked-Production-Variant", "AllTraffic")
        self.send_header("x-amzn-RequestId", record.request_id)
        self.end_headers()
        self.wfile.write(body)
        record.finish("completed")

    def _stream_tokens(
        self, record: ReceivedRequest, request: tgi.GenerationRequest, renderer: Renderer, fault: Fault | None
    ) -> str:
        config = self.server.emulator.config
        parts = _PartSplitter(random.Random(record.request_id), enabled=config.split_parts)  # noqa: S311 (test data, not secrets)
        if not self._pause(config.ttft_ms / 1000):
            return "server_stopped"
        for index, (token, finish_reason) in enumerate(self._container.generate(request), start=1):
            if fault and record.tokens_sent == fault.after_tokens:
                outcome = self._apply_fault(fault, renderer, parts)
                if outcome is not None:
                    return outcome
            if index > 1 and not self._pause(config.token_ms / 1000):
                return "server_stopped"
            self._write_frames(parts.split(renderer.token(index, token, finish_reason)))
            record.token_sent_at.append(time.time())
            record.tokens_sent += 1
        self._write_frames(parts.split(renderer.end()) + parts.flush())
        return "completed"

    def _apply_fault(self, fault: Fault, renderer: Renderer, parts: _PartSplitter) -> str | None:
        """Act out a mid-stream fault; ``None`` when generation goes on afterwards (a stall)."""
        pending = parts.flush()
        if fault.kind == "in_band_error":
            message = fault.message or "Request failed during generation: Server error: CUDA out of memory"
            self._write_frames([*pending, eventstream.payload_part(renderer.error(message, fault.error_type))])
        elif fault.kind in ("model_stream_error", "internal_stream_failure"):
            self._write_frames(pending)
            if fault.kind == "model_stream_error":
                frame = eventstream.exception_event(
                    "ModelStreamError", fault.message or "Model stream broken", error_code="StreamBroken"
                )
            else:
                frame = eventstream.exception_event(
                    "InternalStreamFailure", fault.message or "Internal stream failure"
                )
            self._write_chunk(frame)
        elif fault.kind == "drop_connection":
            self._write_frames(pending)
            self._drop_connection(eventstream.payload_part(renderer.token(1, EOS, None)))
            return "dropped"
        elif fault.kind == "stall":
            self._write_frames(pending)
            self._pause(fault.stall_seconds)
            return None
        return f"fault:{fault.kind}"

    # -- low-level writing -------------------------------------------------

    def _pause(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; False when it is."""
        return not self.server.emulator.stopping.wait(seconds) if seconds > 0 else True

    def _start_stream(self, record: ReceivedRequest, content_type: str = "text/event-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("X-Amzn-SageMaker-Content-Type", content_type)
        self.send_header("x-Amzn-Invoked-Production-Variant", "AllTraffic")
        self.send_header("x-amzn-RequestId", record.request_id)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _end_stream(self, record: ReceivedRequest, outcome: str) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
        except _DISCONNECTED:
            outcome = "client_disconnected"
            self.close_connection = True
        record.finish(outcome)

    def _write_frames(self, frames: list[bytes]) -> None:
        if frames:
            self._write_chunk(b"".join(frames))

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _drop_connection(self, frame: bytes) -> None:
        """Announce a whole frame, send half of it, and close the socket."""
        self.wfile.write(b"%X\r\n%s" % (len(frame), frame[: len(frame) // 2]))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_service_error(self, record: ReceivedRequest, status: int, code: str, message: str) -> None:
        headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": record.request_id}
        self._send_json(status, {"message": message}, headers)
        record.finish(f"error:{code}")

    def _send_model_error(
        self, record: ReceivedRequest, original_status: int, message: str, error_type: str = "generation",
        original: str | None = None,
    ) -> None:
        config = self.server.emulator.config
        log_stream = (
            f"arn:aws:logs:{config.region}:{config.account}:log-group:/aws/sagemaker/Endpoints/{record.endpoint}"
        )
        original = original or json.dumps({"error": message, "error_type": error_type})
        body = {
            "ErrorCode": "CLIENT_ERROR_FROM_MODEL" if original_status < 500 else "SERVER_ERROR_FROM_MODEL",
            "LogStreamArn": log_stream,
            "Message": f"Received {'client' if original_status < 500 else 'server'} error ({original_status}) "
            f"from primary with message \"{original}\". See {log_stream} for more information.",
            "OriginalMessage": original,
            "OriginalStatusCode": original_status,
        }
        self._send_json(424, body, {"x-amzn-ErrorType": "ModelError", "x-amzn-RequestId": record.request_id})
        record.finish("error:ModelError")

    def _send_unknown_operation(self) -> None:
        self._send_json(404, {"message": f"Unknown operation {self.command} {self.path}"},
                        {"x-amzn-ErrorType": "UnknownOperationException"})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _PartSplitter:
    """Cuts each event into ``PayloadPart`` frames whose boundaries do not align with events.

    Some events are cut inside a multi-byte UTF-8 character, and the blank line
    that ends an SSE event is sometimes held back and sent at the start of the
    next part (the token itself is never delayed: its line is already complete).
    """

    def __init__(self, rng: random.Random, enabled: bool) -> None:
        self._rng = rng
        self._enabled = enabled
        self._held = b""

    def split(self, event: bytes) -> list[bytes]:
        data, self._held = self._held + event, b""
        if not data:
            return []
        if not self._enabled:
            return [eventstream.payload_part(data)]
        if data.endswith(b"\n\n") and self._rng.random() < 0.3:
            data, self._held = data[:-1], b"\n"
        cuts = set()
        if len(data) > 1:
            cuts = {self._rng.randrange(1, len(data)) for _ in range(self._rng.choice((0, 1, 1, 2)))}
        continuation = [i for i, byte in enumerate(data) if 0x80 <= byte < 0xC0]
        if continuation and self._rng.random() < 0.5:
            cuts.add(self._rng.choice(continuation))
        bounds = [0, *sorted(cuts), len(data)]
        return [eventstream.payload_part(data[a:b]) for a, b in itertools.pairwise(bounds) if b > a]

    def flush(self) -> list[bytes]:
        held, self._held = self._held, b""
        return [eventstream.payload_part(held)] if held else []
