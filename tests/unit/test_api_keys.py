"""API keys: the key document, how a presented key is recognised, and the store's refresh and fallback rules."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from llm_stream.api_keys import EMPTY_DOCUMENT, KeyDocumentError, KeyRecord, KeyRing, key_digest, new_key
from llm_stream.key_store import RETRY_AFTER_FAILURE_SECONDS, KeyStore
from tests.helpers.logs import collect_request_logs

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def record(name: str, key: str, expires_at: datetime | None = None) -> KeyRecord:
    return KeyRecord(name=name, sha256=key_digest(key), created_at=NOW - timedelta(days=1), expires_at=expires_at)


def test_new_keys_are_long_random_and_recognisable() -> None:
    keys = {new_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("lsk-")
        assert len(key) == 4 + 43  # 32 random bytes in base64url
        assert key.isascii()
        assert " " not in key


def test_the_document_holds_digests_and_round_trips() -> None:
    key = new_key()
    ring = KeyRing((record("team-a", key), record("team-b", new_key(), expires_at=NOW + timedelta(days=90))))
    document = ring.to_document()
    assert key not in document
    assert key_digest(key) in document
    assert KeyRing.from_document(document) == ring
    assert json.loads(EMPTY_DOCUMENT) == {"format": "llm-stream-api-keys/1", "keys": []}


@pytest.mark.parametrize(("document", "message"), [
    ("{", "the key document is not JSON"),
    ('{"keys": []}', "is not an object with format 'llm-stream-api-keys/1'"),
    ('{"format": "llm-stream-api-keys/1", "keys": {}}', "'keys' is not a list"),
    ('{"format": "llm-stream-api-keys/1", "keys": [1]}', "keys[0] is not an object"),
    ('{"format": "llm-stream-api-keys/1", "keys": [{"name": "a b", "sha256": "' + "0" * 64 + '"}]}',
     "keys[0].name is not 1 to 64 letters"),
    ('{"format": "llm-stream-api-keys/1", "keys": [{"name": "a", "sha256": "ABC"}]}',
     "keys[0].sha256 is not 64 lowercase hex digits"),
    ('{"format": "llm-stream-api-keys/1", "keys": [{"name": "a", "sha256": "' + "0" * 64
     + '", "created_at": "2026-11-25T12:00:00"}]}', "keys[0].created_at is not an ISO 8601 time with a time zone"),
    ('{"format": "llm-stream-api-keys/1", "keys": [{"name": "a", "sha256": "' + "0" * 64
     + '", "created_at": "2026-11-25T12:00:00Z", "expires_at": 5}]}', "keys[0].expires_at is not an ISO 8601"),
])
def test_a_bad_document_is_refused_saying_where(document: str, message: str) -> None:
    with pytest.raises(KeyDocumentError, match=None) as raised:
        KeyRing.from_document(document)
    assert message in str(raised.value)


def test_limits_on_a_model_round_trip_and_are_written_only_when_set() -> None:
    from llm_stream.api_keys import parse_record
    from llm_stream.key_limits import KeyLimits

    plain = KeyRecord(name="team-a", sha256=key_digest(new_key()), created_at=datetime(2026, 12, 7, tzinfo=UTC),
                      limits=KeyLimits(rpm=60))
    assert "model_limits" not in plain.to_json()  # records without them stay as older functions read them
    limited = plain.with_model_limits("m-2", KeyLimits(rpm=5)).with_model_limits("m-1", KeyLimits(tpm=9))
    assert limited.to_json()["model_limits"] == {"m-1": {"tpm": 9}, "m-2": {"rpm": 5}}
    assert parse_record(limited.to_json(), "record") == limited
    assert (limited.limits_on("m-2"), limited.limits_on("m-3")) == (KeyLimits(rpm=5), None)
    assert limited.with_model_limits("m-2", KeyLimits()).model_limits == (("m-1", KeyLimits(tpm=9)),)
    with pytest.raises(KeyDocumentError, match=r"record\.model_limits\.m-1 has unknown limits rps"):
        parse_record({**limited.to_json(), "model_limits": {"m-1": {"rps": 1}}}, "record")
    with pytest.raises(KeyDocumentError, match=r"record\.model_limits is not an object"):
        parse_record({**limited.to_json(), "model_limits": ["m-1"]}, "record")


def test_a_name_listed_twice_is_refused() -> None:
    ring = KeyRing((record("a", new_key()), record("a", new_key())))
    with pytest.raises(KeyDocumentError, match="list a more than once"):
        KeyRing.from_document(ring.to_document())


def test_a_key_is_found_by_its_digest_and_nothing_else_matches() -> None:
    keys = [new_key() for _ in range(5)]
    ring = KeyRing(tuple(record(f"consumer-{index}", key) for index, key in enumerate(keys)))
    for index, key in enumerate(keys):
        assert ring.find(key) == ring.records[index]
    for wrong in ("", keys[0][:-1], keys[0] + "x", keys[0].upper(), key_digest(keys[0]), " " + keys[0],
                  keys[0] * 6):
        assert ring.find(wrong) is None, wrong


def test_every_record_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """hmac.compare_digest for each record, the matching one first included: no early exit."""
    compared: list[bytes] = []
    real_compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # the module api_keys calls it through
    keys = [new_key() for _ in range(4)]
    ring = KeyRing(tuple(record(f"c{index}", key) for index, key in enumerate(keys)))
    assert ring.find(keys[0]) == ring.records[0]
    assert compared == [r.sha256.encode() for r in ring.records]
    compared.clear()
    assert ring.find("lsk-unknown") is None
    assert len(compared) == 4


def test_expiry() -> None:
    expiring = record("a", new_key(), expires_at=NOW)
    assert not expiring.expired(NOW - timedelta(seconds=1))
    assert expiring.expired(NOW)
    assert not record("b", new_key()).expired(NOW + timedelta(days=10_000))


def test_expiry_written_with_any_offset_is_the_same_instant() -> None:
    document = KeyRing((record("a", new_key(), expires_at=NOW),)).to_document()
    assert '"expires_at": "2026-11-25T12:00:00Z"' in document
    shifted = json.loads(document)
    shifted["keys"][0]["expires_at"] = "2026-11-25T17:00:00+05:00"  # the same instant, written elsewhere
    (parsed,) = KeyRing.from_document(json.dumps(shifted)).records
    assert parsed.expired(NOW)
    assert not parsed.expired(NOW - timedelta(seconds=1))


# -- the store: refresh interval, last good copy, fail closed --------------------------------------


class ScriptedSource:
    """A key source whose next reads are set by the test: a document, or an exception to raise."""

    description = "scripted source"

    def __init__(self) -> None:
        self.document: str | Exception = EMPTY_DOCUMENT
        self.reads = 0

    def read(self) -> KeyRing:
        self.reads += 1
        if isinstance(self.document, Exception):
            raise self.document
        return KeyRing.from_document(self.document)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def one_key_document(key: str) -> str:
    return KeyRing((record("team-a", key),)).to_document()


def test_the_store_reads_once_per_interval_and_sees_a_revocation_at_the_next() -> None:
    source, clock, key = ScriptedSource(), Clock(), new_key()
    source.document = one_key_document(key)
    store = KeyStore(source, refresh_seconds=60, max_age_seconds=300, clock=clock)

    async def scenario() -> None:
        ring = await store.ring()
        assert ring is not None
        assert ring.find(key) is not None
        clock.now += 59
        source.document = EMPTY_DOCUMENT  # revoked
        ring = await store.ring()
        assert ring is not None
        assert ring.find(key) is not None
        assert source.reads == 1
        clock.now += 1
        ring = await store.ring()
        assert ring is not None
        assert ring.find(key) is None
        assert source.reads == 2

    anyio.run(scenario)


def test_failed_reads_serve_the_last_good_copy_until_it_is_too_old_then_fail_closed() -> None:
    source, clock, key = ScriptedSource(), Clock(), new_key()
    source.document = one_key_document(key)
    store = KeyStore(source, refresh_seconds=60, max_age_seconds=300, clock=clock)

    async def scenario() -> list[dict]:
        with collect_request_logs() as logs:
            assert await store.ring() is not None
            source.document = ConnectionError("Secrets Manager unreachable")
            clock.now += 60
            assert await store.ring() is not None  # read failed: the copy (60 s old) serves
            clock.now += 1
            assert await store.ring() is not None
            assert source.reads == 2  # the next attempt waits RETRY_AFTER_FAILURE_SECONDS
            clock.now += RETRY_AFTER_FAILURE_SECONDS
            assert await store.ring() is not None
            assert source.reads == 3
            clock.now = 1_000_000.0 + 301
            assert await store.ring() is None  # too old: fail closed
            assert 1 <= store.retry_after_seconds() <= RETRY_AFTER_FAILURE_SECONDS
            source.document = one_key_document(key)
            clock.now += RETRY_AFTER_FAILURE_SECONDS
            assert await store.ring() is not None  # recovered
            return list(logs)

    logs = anyio.run(scenario)
    assert [line["event"] for line in logs] == ["api_keys_read_failed"] * 3
    assert logs[0] == {"event": "api_keys_read_failed", "source": "scripted source",
                       "error": "ConnectionError: Secrets Manager unreachable", "last_good_copy_age_seconds": 60.0,
                       "serving_last_good_copy": True}
    assert logs[-1]["serving_last_good_copy"] is False


def test_without_any_good_copy_the_store_fails_closed_and_says_why() -> None:
    source, clock = ScriptedSource(), Clock()
    source.document = '{"format": "something else"}'
    store = KeyStore(source, refresh_seconds=60, max_age_seconds=300, clock=clock)

    async def scenario() -> list[dict]:
        with collect_request_logs() as logs:
            assert await store.ring() is None
            return list(logs)

    (line,) = anyio.run(scenario)
    assert line["last_good_copy_age_seconds"] is None
    assert "is not an object with format" in line["error"]


def test_concurrent_requests_share_one_read() -> None:
    source, key = ScriptedSource(), new_key()
    source.document = one_key_document(key)
    store = KeyStore(source, refresh_seconds=60, max_age_seconds=300)

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(store.ring)

    anyio.run(scenario)
    assert source.reads == 1


def test_a_key_s_limits_on_a_model_restrict_within_its_own_and_only_counted_ones_add_a_counter() -> None:
    from llm_stream.key_accounting import KEY_RECORD_STATE, KeyAccounting
    from llm_stream.key_limits import KeyLimits
    from llm_stream.settings import Settings

    settings = Settings(endpoint_name="e", model_id="m", auth_mode="api_key", api_keys_table="t",
                        key_limit_defaults="max_streams=2")
    accounting = KeyAccounting(settings, table=None)  # type: ignore[arg-type]  # the plan reads no table
    record = KeyRecord(name="team-a", sha256=key_digest(new_key()), created_at=datetime.now(UTC),
                       limits=KeyLimits(rpm=60, max_tokens=500))

    def plan(on_model: KeyLimits) -> tuple[KeyLimits | None, tuple[tuple[str, KeyLimits], ...]]:
        known = accounting._plan({"state": {KEY_RECORD_STATE: record.with_model_limits("m", on_model)}})
        return known.limits, known.counters

    key_limits = KeyLimits(max_streams=2, rpm=60, max_tokens=500)
    # Only a shorter answer on the model: no counter of its own (else it would double the key's allowance).
    assert plan(KeyLimits(max_tokens=100)) == (KeyLimits(max_streams=2, rpm=60, max_tokens=100),
                                               (("team-a", key_limits),))
    assert plan(KeyLimits(max_tokens=900))[0] == key_limits  # the smaller of the two
    # A counted limit on the model: counted under the key (its limits) and under key@model (the model's only).
    assert plan(KeyLimits(rpm=1)) == (key_limits, (("team-a", key_limits), ("team-a@m", KeyLimits(rpm=1))))
