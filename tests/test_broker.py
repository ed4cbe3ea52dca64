"""Credentials from a broker: a real HTTP server on loopback, not a patched function."""

import asyncio
import json
import logging
import socket
import threading
import time
import tracemalloc
from datetime import datetime

import pytest

from datasette_files_s3 import credentials
from datasette_files_s3.config import CLOCK_SKEW_SECONDS, parse_source_config
from datasette_files_s3.credentials import BrokerCredentialsProvider, refresh_time
from datasette_files_s3.errors import CredentialsUnavailable
from tests.fault_injection import Broker
from tests.helpers import actor_cookies, prepare, upload

BROKER_SECRET = "broker-secret-value-9f2c"
SESSION_TOKEN = "session-token-value-71ab"


def source_config(broker, bucket, **extra) -> dict:
    config = {"credentials_url": broker.url, "credentials_url_secret": BROKER_SECRET, "region": "us-east-1"}
    if bucket.server.endpoint_url:
        config["endpoint_url"] = bucket.server.endpoint_url
    return {**config, **extra}


@pytest.fixture
def broker(bucket):
    if not bucket.server.can_create_buckets:
        pytest.skip("the broker hands out the test keys; not meaningful against a real bucket")
    server = Broker(
        BROKER_SECRET,
        f"s3://{bucket.name}/from-broker/",
        bucket.server.access_key_id,
        bucket.server.secret_access_key,
        SESSION_TOKEN,
    ).start()
    yield server
    server.stop()


class Clock:
    """A clock the test moves by hand: the provider reads it instead of time.time()."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def provider(broker, bucket, clock=time.time, **config):
    return BrokerCredentialsProvider(
        parse_source_config("brokered", source_config(broker, bucket, **config)), clock=clock
    )


async def test_broker_is_asked_with_form_encoded_secret(broker, bucket):
    credentials = await provider(broker, bucket).get()
    content_type, form = broker.request_log[0]
    assert content_type == "application/x-www-form-urlencoded"
    assert form == {"secret": [BROKER_SECRET]}
    assert credentials.session_token == SESSION_TOKEN
    assert (credentials.bucket, credentials.prefix) == (bucket.name, "from-broker/")


async def test_s3folder_sets_bucket_and_prefix_of_uploads(broker, bucket, make_datasette):
    ds = await make_datasette({"s3files": {"storage": "s3", "config": source_config(broker, bucket)}})
    data = await upload(ds, actor_cookies(ds), b"brokered bytes", filename="b.txt")
    keys = bucket.keys("from-broker/")
    assert len(keys) == 1 and keys[0].endswith("/b.txt")
    assert data["file"]["size"] == 14


async def test_refreshes_before_expiry_not_at_it(broker, bucket):
    clock = Clock()
    credentials_provider = provider(broker, bucket, clock)
    first = await credentials_provider.get()
    clock.now = first.refresh_at - 1
    assert await credentials_provider.get() is first
    assert broker.requests == 1
    clock.now = first.refresh_at  # inside the margin, well before expiry
    assert first.seconds_left(clock.now) > 0
    assert await credentials_provider.get() is first  # still valid: served while the refresh runs
    await credentials_provider.wait_for_refresh()
    second = await credentials_provider.get()
    assert second is not first
    assert broker.requests == 2


@pytest.mark.parametrize("longest", ["upload_expires", "download_expires"])
async def test_keys_are_refreshed_while_they_still_outlive_the_longest_url(broker, bucket, longest):
    """Keys lasting an hour, URLs lasting 20 minutes: a URL signed on the old keys
    just before the refresh must still get its 20 minutes (plus clock skew)."""
    clock = Clock()
    credentials_provider = provider(broker, bucket, clock, **{longest: 1200})
    first = await credentials_provider.get()
    assert first.seconds_left(first.refresh_at) >= 1200 + CLOCK_SKEW_SECONDS
    clock.now = first.expires_at - 1200  # 20 minutes left: not enough for a new URL
    await credentials_provider.get()
    await credentials_provider.wait_for_refresh()
    second = await credentials_provider.get()
    assert second is not first
    assert broker.requests == 2


def test_refresh_margin():
    assert refresh_time(0, 3600) == 3600 - 300
    # 15-minute URLs on hour-long keys: refreshed 16 minutes (with skew) before expiry.
    assert refresh_time(0, 3600, longest_url=900) == 3600 - 900 - CLOCK_SKEW_SECONDS
    # Keys that cannot cover a whole URL are used for half their life, not refetched per request.
    assert refresh_time(0, 600, longest_url=900) == 300
    assert refresh_time(0, 100) == 50


async def test_one_refresh_at_a_time_under_concurrency(broker, bucket):
    broker.delay = 0.3
    credentials_provider = provider(broker, bucket)
    results = await asyncio.gather(*[credentials_provider.get() for _ in range(20)])
    assert broker.requests == 1
    assert all(result is results[0] for result in results)


async def test_broker_down_at_startup_then_recovers(broker, bucket, make_datasette, caplog):
    broker.failing = True
    with caplog.at_level(logging.WARNING, logger="datasette_files_s3"):
        ds = await make_datasette({"s3files": {"storage": "s3", "config": source_config(broker, bucket)}})
    assert "datasette-files source 's3files': credentials broker" in caplog.text
    assert "will retry" in caplog.text
    assert BROKER_SECRET not in caplog.text

    response = await prepare(ds, actor_cookies(ds), size=3)
    assert response.status_code == 503
    assert "credentials broker at 127.0.0.1" in response.json()["errors"][0]
    assert "HTTP 503" in response.json()["errors"][0]
    assert BROKER_SECRET not in response.text

    broker.failing = False
    response = await prepare(ds, actor_cookies(ds), size=3)
    assert response.status_code == 200


async def test_other_sources_keep_working_while_broker_is_down(broker, bucket, make_datasette):
    broker.failing = True
    ds = await make_datasette(
        {
            "brokered": {"storage": "s3", "config": source_config(broker, bucket)},
            "plain": {"storage": "s3", "config": bucket.source_config()},
        }
    )
    assert (await prepare(ds, actor_cookies(ds), source="brokered", size=3)).status_code == 503
    await upload(ds, actor_cookies(ds), b"still fine", source="plain")
    assert (await ds.client.get("/-/files")).status_code == 200


async def test_unusable_broker_answer_names_the_missing_field(broker, bucket):
    broker.answer = {"AccessKeyId": "x", "SecretAccessKey": "y", "Expiration": "2030-01-01T00:00:00Z"}
    with pytest.raises(CredentialsUnavailable) as info:
        await provider(broker, bucket).get()
    assert "the answer has no SessionToken" in str(info.value)


async def test_a_broker_answer_nested_too_deeply_is_credentials_unavailable(broker, bucket, make_datasette):
    # Under the 64 KiB cap, yet deeper than Python's recursion limit: json.loads
    # raises RecursionError, which is no ValueError (every prepare was a 500).
    broker.raw_answer = b"[" * 30_000 + b"]" * 30_000
    ds = await make_datasette({"brokered": {"storage": "s3", "config": source_config(broker, bucket)}})
    response = await prepare(ds, actor_cookies(ds), source="brokered", size=3)
    assert response.status_code == 503, response.text
    assert "credentials broker" in response.json()["errors"][0]


async def test_unreachable_broker_is_credentials_unavailable(bucket):
    from tests.live_servers import free_port

    config = parse_source_config(
        "gone",
        {"credentials_url": f"http://127.0.0.1:{free_port()}/x", "credentials_url_secret": BROKER_SECRET},
    )
    with pytest.raises(CredentialsUnavailable) as info:
        await BrokerCredentialsProvider(config).get()
    assert "could not be reached" in str(info.value)
    assert BROKER_SECRET not in str(info.value)


async def test_presigned_urls_never_outlive_broker_credentials(broker, bucket, make_datasette):
    import base64

    broker.lifetime = 120
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": source_config(broker, bucket, upload_expires=3600)}}
    )
    response = await prepare(ds, actor_cookies(ds), size=3)
    policy = json.loads(base64.b64decode(response.json()["upload_fields"]["policy"]))
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00")).timestamp()
    assert expiration <= time.time() + 120


# --- a slow or hostile broker -------------------------------------------------
# It cannot hold Datasette: the whole call is bounded, still-valid keys are
# served while a refresh runs, and an answer over 64 KiB is refused unread.


class HostileBroker:
    """Answers every request with HTTP headers and then `body_bytes` bytes,
    `chunk` bytes at a time with `pause` seconds between them."""

    def __init__(self, body_bytes: int, chunk: int, pause: float):
        self.body_bytes, self.chunk, self.pause = body_bytes, chunk, pause
        self.sent = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/credentials"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection):
        with connection:
            connection.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {self.body_bytes}\r\n\r\n"
            try:
                connection.sendall(head.encode())
                left = self.body_bytes
                while left > 0:
                    piece = b" " * min(self.chunk, left)
                    connection.sendall(piece)
                    self.sent += len(piece)
                    left -= len(piece)
                    time.sleep(self.pause)
            except OSError:
                return  # the client gave up: what it should do

    def close(self):
        self.listener.close()


def hostile_provider(hostile: HostileBroker, clock=time.time) -> BrokerCredentialsProvider:
    config = {"credentials_url": hostile.url, "credentials_url_secret": BROKER_SECRET, "bucket": "b"}
    return BrokerCredentialsProvider(parse_source_config("brokered", config), clock=clock)


@pytest.fixture
def short_deadline(monkeypatch):
    """The broker deadline at 1 s instead of 10, so a test need not wait 10 s."""
    monkeypatch.setattr(credentials, "BROKER_TIMEOUT_SECONDS", 1)


async def test_a_broker_sending_a_byte_at_a_time_is_cut_off_at_the_deadline(short_deadline):
    """A byte every 0.2 s never trips a per-read timeout; the whole call's deadline
    ends it. Without one, this broker would hold the request for 60 s."""
    hostile = HostileBroker(body_bytes=300, chunk=1, pause=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(CredentialsUnavailable, match="did not answer within 1 seconds"):
            await hostile_provider(hostile).get()
        assert time.monotonic() - started < 30
    finally:
        hostile.close()


async def test_a_huge_broker_answer_is_refused_unread():
    hostile = HostileBroker(body_bytes=150 * 1024**2, chunk=65536, pause=0)
    try:
        tracemalloc.start()
        with pytest.raises(CredentialsUnavailable, match="answer over 65536 bytes"):
            await hostile_provider(hostile).get()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 8 * 1024**2, f"{peak / 1024**2:.1f} MiB traced"
    finally:
        hostile.close()


async def test_still_valid_keys_are_served_while_a_hung_refresh_runs(broker, bucket, short_deadline):
    clock = Clock()
    keys = provider(broker, bucket, clock)
    first = await keys.get()
    broker.delay = 3  # the refresh will hang past the deadline
    clock.now = first.refresh_at + 1  # inside the margin, an hour from expiry
    answers = await asyncio.wait_for(asyncio.gather(*[keys.get() for _ in range(5)]), timeout=0.5)
    assert all(answer is first for answer in answers)
    await keys.wait_for_refresh()  # it failed, logged; the keys still serve
    assert await keys.get() is first
