"""A cold start as Lambda pays it: process start -> ready, and -> the first byte of a streamed answer.

    python benchmarks/cold_start.py [--runs 7] [--compare DIR]    (make bench-coldstart)

The function is started exactly as Lambda starts it (``lambda/run.sh``, under the Web Adapter's
``AWS_LWA_PORT``) in front of the emulator (its own process, answering at once), and polled on
``/healthz`` every 5 ms until it answers: that is "ready", what the Web Adapter waits for before it
forwards the first invocation. Then one streamed ``POST /``: its first body byte is "first token".

The floor is a bare ASGI app under the same uvicorn (``floor_app.py``): what any Python function
behind the Web Adapter pays. Runs are interleaved (the order turns each round) and each ratio is
taken within its round, so a busy moment of the machine weighs on both sides; the figures are the
medians with their spread. ``--compare DIR`` adds another checkout's function (e.g. the code before
a change) to the same rounds. Last, ``-X importtime``: what the function's import costs, by
top-level package.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import math
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks")]  # its siblings (not a package); the project's are installed

from interleaved import quartiles, ratio, rounds  # noqa: E402

from local_mode.servers import free_port, function_environment  # noqa: E402

POLL_SECONDS = 0.005
START_TIMEOUT_SECONDS = 30.0
BODY = b'{"inputs": "Hello", "parameters": {"max_new_tokens": 4}}'


@dataclass(frozen=True)
class Variant:
    name: str
    start: Callable[[int], subprocess.Popen[bytes]]
    streams: bool


@dataclass(frozen=True)
class Start:
    """One start's figures, in seconds from process start: ready, and (a function's) first byte and the CPU
    time it had used by then (what Lambda's memory size scales)."""

    ready: float
    first_token: float = math.nan
    cpu: float = math.nan


def _get_status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def _wait_ready(port: int, process: subprocess.Popen[bytes], path: str = "/healthz") -> None:
    deadline = time.perf_counter() + START_TIMEOUT_SECONDS
    while _get_status(port, path) != 200:
        if process.poll() is not None or time.perf_counter() > deadline:
            raise RuntimeError(f"the server on port {port} did not start")
        time.sleep(POLL_SECONDS)


def _first_byte(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/", body=BODY, headers={"content-type": "application/json",
                                                             "accept": "text/event-stream"})
        response = connection.getresponse()
        if response.status != 200 or not response.read(1):
            raise RuntimeError(f"the streamed answer failed: {response.status}")
    finally:
        connection.close()


def _run_once(variant: Variant) -> Start:
    port = free_port()
    started = time.perf_counter()
    process = variant.start(port)
    try:
        _wait_ready(port, process)
        ready = time.perf_counter() - started
        if not variant.streams:
            return Start(ready)
        _first_byte(port)
        return Start(ready, time.perf_counter() - started, _cpu_seconds(process.pid))
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``run.sh`` execs Python, so its pid is the server's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _python_environment(path: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "PYTHONPATH": path}


def floor(port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "floor_app:app", "--port", str(port), "--log-level", "warning",
               "--no-access-log", "--http", "h11", "--ws", "none", "--lifespan", "off"]
    return subprocess.Popen(command, cwd=ROOT / "benchmarks", env=_python_environment(str(ROOT / "benchmarks")),  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def function(lambda_dir: Path, emulator_url: str) -> Callable[[int], subprocess.Popen[bytes]]:
    """``lambda/run.sh`` as the Lambda runtime runs it: the task root, and the adapter's port."""

    def start(port: int) -> subprocess.Popen[bytes]:
        env = {**function_environment(emulator_url), "LAMBDA_TASK_ROOT": str(lambda_dir), "LAMBDA_RUNTIME_DIR": "",
               "AWS_LWA_PORT": str(port), "PYTHONPATH": "",
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        return subprocess.Popen(["/bin/bash", str(lambda_dir / "run.sh")], cwd=lambda_dir, env=env,  # noqa: S603
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return start


def _spread(values: list[float]) -> str:
    first, median, third = quartiles(values)
    return f"{median * 1000:6.0f} ms (IQR {first * 1000:.0f}-{third * 1000:.0f})"


#: What the server imports on its way to ready, and what the first request needs besides (``preload.py``).
IMPORTS = {"on the way to ready": "import llm_stream.serve",
           "after it (the preload)": "import botocore.session, llm_stream.payloads, llm_stream.openai_payloads"}


def import_costs(lambda_dir: Path, statement: str, top: int = 8) -> list[tuple[str, float]]:
    """Self time of ``statement``'s imports, summed by top-level package (one run)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], cwd=lambda_dir,  # noqa: S603
                            env=_python_environment(str(lambda_dir)), capture_output=True, text=True, check=True)
    by_package: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        by_package[name.strip().split(".")[0]] += int(self_us) / 1000
    return sorted(by_package.items(), key=lambda item: -item[1])[:top]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--compare", type=Path, help="another checkout whose function runs in the same rounds")
    args = parser.parse_args(argv)

    emulator_port = free_port()
    emulator = subprocess.Popen([sys.executable, "-m", "sagemaker_emulator", "--port", str(emulator_port),  # noqa: S603
                                 "--ttft-ms", "0", "--token-ms", "0"], cwd=ROOT, env=_python_environment(str(ROOT)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    try:
        _wait_ready(emulator_port, emulator, "/_emulator/health")
        variants = [Variant("floor (bare ASGI app)", floor, streams=False),
                    Variant("function", function(ROOT / "lambda", emulator_url), streams=True)]
        if args.compare:
            variants.append(Variant(f"function at {args.compare}", function(args.compare / "lambda", emulator_url),
                                    streams=True))
        for variant in variants:  # warm the file cache: the first start of each is not counted
            _run_once(variant)
        starts = rounds({variant.name: functools.partial(_run_once, variant) for variant in variants}, args.runs)
    finally:
        _stop(emulator)

    base = [start.ready for start in starts[variants[0].name]]
    print(f"cold start, {args.runs} interleaved runs: median (IQR); ratios to the floor's ready, per round")
    print(f"{'':34} {'ready':>24} {'x floor':>22} {'first token':>24} {'x floor ready':>22}")
    for variant in variants:
        ready = [start.ready for start in starts[variant.name]]
        first_token = [start.first_token for start in starts[variant.name]]
        first = (_spread(first_token), ratio(first_token, base)) if variant.streams else ("", "")
        print(f"{variant.name[:34]:34} {_spread(ready):>24} {ratio(ready, base):>22} {first[0]:>24} {first[1]:>22}")
    print("\nCPU time used by the first token (Lambda gives 1 vCPU at 1,769 MB, in proportion below it; a start is "
          "one thread's work, so it takes about CPU x 1769 / MB there):")
    for variant in variants[1:]:
        cpu = statistics.median(start.cpu for start in starts[variant.name])
        estimates = ", ".join(f"{mb} MB ~{cpu * 1769 / mb * 1000:.0f} ms" for mb in (512, 1024, 1769))
        print(f"  {variant.name[:34]:34} {cpu * 1000:5.0f} ms CPU -> {estimates}")
    for when, statement in IMPORTS.items():
        print(f"\nimports {when}, self time by top-level package (one -X importtime run of `{statement}`):")
        for package, milliseconds in import_costs(ROOT / "lambda", statement):
            print(f"  {package:24} {milliseconds:6.1f} ms")


if __name__ == "__main__":
    main()
