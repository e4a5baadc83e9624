"""What per-key limits cost and what they buy, on the local stack, in one run.

    python benchmarks/key_limits.py [--rounds 5] [--requests 20] [--fairness-rounds 2] [--seconds 6]

The function (its own process, as ``make dev`` runs it) in front of the emulator, its keys and limit state in
a DynamoDB API on loopback (moto's server, one request at a time: ``local_mode/dynamodb.py``).

1. Admission overhead: time to first token for a key with limits (one conditional write before the endpoint
   is called) against a key without (no write), interleaved rounds of sequential requests; the per-round
   difference of p50 and p99, median and IQR. Loopback moto is not DynamoDB: in a region, UpdateItem's own
   latency replaces moto's (docs/limits.md).
2. Fairness: one greedy key keeps 40 streams open while two light keys keep 2 each, against a function that
   serves at most 10 at once (``MAX_CONCURRENT_STREAMS=10``: the local stand-in for reserved concurrency 10),
   with the greedy key uncapped and then capped at ``max_streams=4``, in turns. The light keys' time to first
   token and refusals, side by side. A refused client waits as the ``openai`` SDK would (``Retry-After``). The
   function's server refuses requests past its concurrency (503 ``server_busy``), as Lambda throttles past
   the reserved concurrency: a refused request, even one refused at admission, holds a place while it is
   refused.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

import boto3  # noqa: E402
import httpx  # noqa: E402
import interleaved  # noqa: E402

from llm_stream.key_limits import KeyLimits  # noqa: E402
from llm_stream.limits_table import LimitsTable, new_lease_id  # noqa: E402
from local_mode.dynamodb import LOCAL_TABLE_NAME, create_table, serialised_moto  # noqa: E402
from local_mode.servers import free_port, local_servers  # noqa: E402
from stream_client.key_admin import KeyAdmin  # noqa: E402
from stream_client.key_document import KeyRing  # noqa: E402

PROMPT = {"inputs": "Explain how to plan a small software project.", "parameters": {"max_new_tokens": 8}}
#: Fairness: each stream is this long at the emulator's pace (50 tokens at 20 ms: about a second).
LONG = {"inputs": "Explain how to plan a small software project.", "parameters": {"max_new_tokens": 50}}
GENEROUS = KeyLimits(max_streams=100, rpm=1_000_000, tpm=10**9, monthly_tokens=10**12)


def first_token_ms(http: httpx.Client, url: str, key: str, payload: dict[str, Any]) -> float | str:
    """Time to the first streamed byte of the answer (ms), or the error type it was refused with (429
    ``rate_limit_exceeded`` at admission, 503 ``too_many_streams`` or ``server_busy`` when the function is full)."""
    started = time.perf_counter()
    with http.stream("POST", url, json=payload, headers={"x-api-key": key, "accept": "text/event-stream"}) as answer:
        if answer.status_code != 200:
            answer.read()
            return str(answer.json()["error"]["type"])
        first = None
        for _ in answer.iter_bytes():
            if first is None:
                first = (time.perf_counter() - started) * 1000
        assert first is not None, "an answer without a byte"
        return first


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def admission_round_trip_ms(table: LimitsTable, count: int = 50) -> float:
    """One admission and its release straight against the loopback DynamoDB API: what moto itself costs."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        admission = table.admit("round-trip", GENEROUS, 10, 60, new_lease_id(), time.time())
        times.append((time.perf_counter() - started) * 1000)
        table.release(admission, used_tokens=10)
    return statistics.median(times)


def overhead(url: str, keys: dict[str, str], rounds: int, requests: int, moto_ms: float) -> None:
    http = httpx.Client(timeout=30)

    def measure(key: str) -> Callable[[], tuple[float, float]]:
        def run() -> tuple[float, float]:
            times = [first_token_ms(http, url, key, PROMPT) for _ in range(requests)]
            measured = [value for value in times if isinstance(value, float)]
            return statistics.median(measured), percentile(measured, 0.99)
        return run

    for key in keys.values():  # warm both paths (connections, the function's preload)
        measure(key)()
    results = interleaved.rounds({name: measure(key) for name, key in keys.items()}, rounds)
    base, limited = results["no limits"], results["limits"]
    print(f"\n1. Admission overhead: {rounds} interleaved rounds of {requests} sequential streams per key")
    print(f"{'':<14}{'no limits':>12}{'limits':>12}   added by admission (median of per-round differences)")
    for index, label in ((0, "TTFT p50"), (1, "TTFT p99")):
        plain_value = statistics.median(value[index] for value in base)
        limited_value = statistics.median(value[index] for value in limited)
        added = interleaved.difference([v[index] for v in limited], [v[index] for v in base], "ms", 1)
        print(f"{label:<14}{plain_value:>9.1f} ms{limited_value:>9.1f} ms   {added}")
    print(f"One admission straight against this loopback DynamoDB API takes {moto_ms:.1f} ms (median of 50): the "
          "part of the difference that DynamoDB's own UpdateItem latency replaces when deployed.")


@dataclass
class KeyLoad:
    ttfts: list[float] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    served: int = 0



def fairness_phase(url: str, greedy: str, light: list[str], seconds: float) -> dict[str, KeyLoad]:
    loads = {"greedy": KeyLoad(), "light": KeyLoad()}
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client(key: str, load: KeyLoad) -> None:
        http = httpx.Client(timeout=30)
        while time.monotonic() < stop:
            ttft = first_token_ms(http, url, key, LONG)
            with lock:
                if isinstance(ttft, str):
                    load.refusals[ttft] += 1
                else:
                    load.ttfts.append(ttft)
                    load.served += 1
            if isinstance(ttft, str):
                time.sleep(1.0)  # every refusal here says Retry-After: 1, which the openai SDK waits

    threads = [threading.Thread(target=client, args=(greedy, loads["greedy"])) for _ in range(40)]
    threads += [threading.Thread(target=client, args=(key, loads["light"])) for key in light for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return loads


def fairness(url: str, admin: KeyAdmin, keys: dict[str, str], rounds: int, seconds: float) -> None:
    results: dict[str, list[dict[str, KeyLoad]]] = {"uncapped": [], "capped": []}
    for index in range(rounds * 2):
        mode = ("uncapped", "capped")[index % 2]
        admin.set_limits("greedy", {"max_streams": None if mode == "uncapped" else 4})
        time.sleep(1.5)  # the function rereads the keys every second here
        results[mode].append(fairness_phase(url, keys["greedy"], [keys["light-1"], keys["light-2"]], seconds))
    print(f"\n2. Fairness: 40 greedy streams and 2 x 2 light ones, {seconds:g} s per phase, {rounds} phases each, "
          "in turns; the function serves 10 at once")
    print(f"{'':<34}{'greedy uncapped':>18}{'greedy max_streams=4':>22}")
    rows: list[tuple[str, Callable[[list[dict[str, KeyLoad]]], str]]] = [
        ("light keys: TTFT p50", lambda phases: f"{percentile(_all(phases, 'light'), 0.5):.0f} ms"),
        ("light keys: TTFT p99", lambda phases: f"{percentile(_all(phases, 'light'), 0.99):.0f} ms"),
        ("light keys: served / refused", lambda phases: _counts(phases, "light")),
        ("greedy key: served / refused", lambda phases: _counts(phases, "greedy")),
    ]
    rows += [(f"  refused: {kind}", functools.partial(_refused, who=who, kind=kind))
             for who in ("light", "greedy") for kind in ("rate_limit_exceeded", "too_many_streams", "server_busy")]
    for label, show in rows:
        print(f"{label:<34}{show(results['uncapped']):>18}{show(results['capped']):>22}")


def _all(phases: list[dict[str, KeyLoad]], who: str) -> list[float]:
    return [value for phase in phases for value in phase[who].ttfts] or [float("nan")]


def _counts(phases: list[dict[str, KeyLoad]], who: str) -> str:
    return f"{sum(p[who].served for p in phases)} / {sum(sum(p[who].refusals.values()) for p in phases)}"


def _refused(phases: list[dict[str, KeyLoad]], who: str, kind: str) -> str:
    return f"{who} {sum(p[who].refusals[kind] for p in phases)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--fairness-rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    with serialised_moto(free_port()) as dynamodb:
        client = boto3.client("dynamodb", endpoint_url=dynamodb, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")
        create_table(client, LOCAL_TABLE_NAME)
        admin = KeyAdmin(client, LOCAL_TABLE_NAME, "benchmark")
        keys = {name: admin.create(name, None, limits)[0] for name, limits in (
            ("unlimited", KeyLimits()), ("limited", GENEROUS), ("greedy", KeyLimits()), ("light-1", KeyLimits()),
            ("light-2", KeyLimits()))}
        admin.import_keys(KeyRing(), "benchmark")  # the marker alone: no older key document to read
        env = {"AUTH_MODE": "api_key", "API_KEYS_TABLE": LOCAL_TABLE_NAME, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb,
               "API_KEYS_REFRESH_SECONDS": "1", "MAX_CONCURRENT_STREAMS": "10", "QUEUE_WAIT_SECONDS": "1"}
        with local_servers(function_env=env, emulator_args=["--ttft-ms", "5", "--token-ms", "20"]) as servers:
            moto_ms = admission_round_trip_ms(LimitsTable(client, LOCAL_TABLE_NAME))
            overhead(servers.function_url, {"no limits": keys["unlimited"], "limits": keys["limited"]}, args.rounds,
                     args.requests, moto_ms)
            fairness(servers.function_url, admin, keys, args.fairness_rounds, args.seconds)


if __name__ == "__main__":
    main()
