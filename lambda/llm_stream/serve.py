"""The function's HTTP server: uvicorn with its limits set on purpose, the same in Lambda and locally.

    python -m llm_stream.serve [--host 127.0.0.1] [--port 8080]

In Lambda, ``run.sh`` starts it and the Web Adapter forwards each invocation to it on loopback,
as one complete request (the adapter holds the whole body of the invocation event before it
sends it), so slow or half-sent requests never reach it there. Locally (``make dev``) it faces
clients directly: the limits below, and the function's own body-read timeout, are what protect it.
"""

from __future__ import annotations

import gc

# A cold start allocates objects that live as long as the process (modules, the app, the client): collecting
# them again and again is wasted. When this module runs as the server (run.sh, make dev), collection is off
# until the preload ends, which switches it back on with what the start allocated frozen (preload.py);
# make bench-coldstart measures it. Importing the module (tests) changes nothing.
if __name__ == "__main__":
    gc.disable()

import argparse
import os

import uvicorn

from .app import create_app
from .http_protocol import function_protocol
from .lifecycle import MAX_HEAD_BYTES
from .settings import Settings

#: Idle seconds before a kept-alive connection is closed (uvicorn's default, stated).
KEEP_ALIVE_SECONDS = 5
#: Connections and tasks allowed beyond the stream limit, for health checks, the page and callers
#: the app is telling 503; past the total, the function answers 503 ``server_busy`` before any route runs
#: (``http_protocol.py``).
CONCURRENCY_HEADROOM = 32
GRACEFUL_SHUTDOWN_SECONDS = 2


def server_config(app: object, settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]  # an ASGI app; uvicorn's type names its own protocols
        host=host,
        port=port,
        access_log=False,  # the app writes one line per request itself
        log_level="warning",
        server_header=False,
        limit_concurrency=settings.max_concurrent_streams + CONCURRENCY_HEADROOM,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # uvicorn refuses a head past this only while it arrives in pieces; the lifecycle refuses any larger one.
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        # The function's own refusals (http_protocol.py), and no WebSocket: an upgrade is an ordinary request.
        http=function_protocol(settings),
        ws="none",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llm_stream.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("AWS_LWA_PORT", "8080")))
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    uvicorn.Server(server_config(create_app(settings), settings, args.host, args.port)).run()


if __name__ == "__main__":
    main()
