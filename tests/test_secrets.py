"""No secret reaches a response, a header, a log line or CLI output.

One `datasette serve` process holds sources with static keys plus a session
token, with a credentials broker (and its secret), with a broker that is down,
with an unreachable S3 endpoint, and with the proxy flow. We fetch every page
and JSON endpoint the plugin and datasette-files serve, as root and as
anonymous, walk every error path, run every `datasette files-s3` command, and
search all of it for the secret values.

Two kinds of value:
- never shown anywhere: the secret access keys and the broker secret;
- shown only where S3 requires them: a presigned URL or POST form carries the
  access key id (X-Amz-Credential) and the session token
  (X-Amz-Security-Token) because S3 cannot check the signature without them.
  They are cut out of presigned URLs and POST fields first, then must not
  appear anywhere else.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import subprocess
import uuid

import httpx
import pytest
from datasette.app import Datasette

from tests.fault_injection import Broker, TcpSwitch
from tests.helpers import actor_cookies, datasette_config, upload
from tests.live_clients import direct_upload, multipart_upload, signed_in
from tests.live_servers import BIN, DatasetteProcess, live_config

TAG = uuid.uuid4().hex[:10]
ACCESS_KEY_ID = f"AKIAKEYID{TAG}".upper()
SECRET_ACCESS_KEY = f"secret-access-key-{TAG}"
SESSION_TOKEN = f"session-token-{TAG}"
BROKER_SECRET = f"broker-secret-{TAG}"
BROKERED_KEY_ID = f"ASIABROKERED{TAG}".upper()
BROKERED_SECRET = f"brokered-secret-key-{TAG}"
BROKERED_SESSION = f"brokered-session-token-{TAG}"
NEVER = [SECRET_ACCESS_KEY, BROKER_SECRET, BROKERED_SECRET]
PRESIGNED_ONLY = [ACCESS_KEY_ID, SESSION_TOKEN, BROKERED_KEY_ID, BROKERED_SESSION]
PRESIGN_FIELDS = re.compile(
    r'"(x-amz-credential|x-amz-security-token|policy|x-amz-signature)"\s*:\s*"[^"]*"', re.I
)
PAGES = [
    "/",
    "/-/files",
    "/-/files.json",
    "/-/files/sources.json",
    "/-/files/search",
    "/-/files/search.json",
    "/-/files/search.json?q=secret",
    "/-/files/batch.json?id={id}",
    "/-/files/source/{s}",
    "/-/files/source/{s}.json",
    "/-/files/upload/{s}",
    "/-/files-s3/upload/{s}",
    "/-/files/{id}",
    "/-/files/{id}.json",
    "/-/files/{id}/download",
    "/-/files/{id}/thumbnail",
    "/-/files/import/{id}",
    "/-/config",
    "/-/config.json",
    "/-/plugins.json",
    "/-/settings.json",
    "/-/metadata.json",
    "/-/versions.json",
    "/-/actor.json",
    "/-/threads.json",
    "/-/databases.json",
    "/-/permissions",
    "/-/allowed.json?action=files-upload",
    "/-/actions.json",
]
SOURCES = ["s3keys", "s3broker", "s3proxy", "s3down", "s3brokerdown", "s3limited"]


class Evidence:
    """Everything a user or an operator could see, gathered for searching."""

    def __init__(self):
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.items.append((where, text))

    def response(self, where: str, response: httpx.Response) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.add(f"{where} -> {response.status_code}", headers + "\n" + response.text)

    def leaks(self, s3_url: str, switch_url: str) -> list[str]:
        found = []
        presigned = re.compile(re.escape(s3_url) + r"[^\s\"'<>]*|" + re.escape(switch_url) + r"[^\s\"'<>]*")
        for where, text in self.items:
            for match in re.finditer(r'"policy"\s*:\s*"([^"]+)"', text):
                text += "\n" + base64.b64decode(match.group(1) + "==").decode(errors="replace")
            for value in NEVER:
                if value in text:
                    found.append(f"{value!r} in {where}")
            scrubbed = PRESIGN_FIELDS.sub("", presigned.sub("<presigned>", text))
            for value in PRESIGNED_ONLY:
                if value in scrubbed:
                    found.append(f"{value!r} outside a presigned URL in {where}")
        return found


@pytest.fixture(scope="module")
def world(s3_server, tmp_path_factory):
    bucket = f"secrets-{TAG}"
    s3_server.create_bucket(bucket)
    broker = Broker(
        BROKER_SECRET, f"s3://{bucket}/brokered/", BROKERED_KEY_ID, BROKERED_SECRET, BROKERED_SESSION
    )
    broken = Broker(
        BROKER_SECRET, f"s3://{bucket}/x/", BROKERED_KEY_ID, BROKERED_SECRET, BROKERED_SESSION, True
    )
    broker.start()
    broken.start()
    switch = TcpSwitch(s3_server.port)  # never started: nothing listens there
    keys = {
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "session_token": SESSION_TOKEN,
        "region": "us-east-1",
    }

    def static(prefix, **extra):
        return {"bucket": bucket, "prefix": prefix, "endpoint_url": s3_server.endpoint_url, **keys, **extra}

    def brokered(url):
        return {
            "credentials_url": url,
            "credentials_url_secret": BROKER_SECRET,
            "endpoint_url": s3_server.endpoint_url,
        }

    sources = {
        "s3keys": static("keys", multipart_threshold="5MiB"),
        "s3broker": brokered(broker.url),
        "s3proxy": static("proxy", direct_uploads=False),
        "s3down": static("down", endpoint_url=switch.url),
        "s3brokerdown": brokered(broken.url),
        "s3limited": static("limited", max_file_size=10, allowed_content_types=["image/*"]),
    }
    config = {
        "plugins": {
            "datasette-files": {"sources": {k: {"storage": "s3", "config": v} for k, v in sources.items()}}
        },
        "permissions": live_config({})["permissions"],
    }
    internal = tmp_path_factory.mktemp("secrets") / "internal.db"
    server = DatasetteProcess(config, internal=str(internal)).start()
    yield s3_server, server, switch, bucket
    server.stop()
    broker.stop()
    broken.stop()


@pytest.mark.store("permissive", reason="signs with made-up keys the store must not check")
def test_no_secret_in_pages_errors_logs_or_cli(world):
    s3_server, server, switch, bucket = world
    evidence = Evidence()
    http = httpx.Client(timeout=60)
    alice = signed_in(server.url, server.cookie_for("alice"))
    root = signed_in(server.url, server.cookie_for("root"))
    anonymous = signed_in(server.url, None)

    # Files to show: direct, brokered, multipart and proxied, one an image for the thumbnail.
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    ids = {
        "s3keys": direct_upload(alice, http, "s3keys", png, "pixel.png", "image/png")["id"],
        "s3broker": direct_upload(alice, http, "s3broker", b"brokered", "b.txt", "text/plain")["id"],
    }
    multipart_upload(alice, http, "s3keys", b"m" * (6 * 1024**2), "big.bin", workers=1)
    plan = alice.post(
        "/-/files/upload/s3proxy/-/prepare",
        json={"filename": "p.txt", "content_type": "text/plain", "size": 5},
    ).json()
    evidence.add("proxy prepare", json.dumps(plan))
    sent = alice.post(plan["upload_url"], data=plan["upload_fields"], files={"file": ("p.txt", b"proxy")})
    evidence.response("proxy upload", sent)
    done = alice.post("/-/files/upload/s3proxy/-/complete", json={"upload_token": plan["upload_token"]})
    evidence.response("proxy complete", done)
    ids["s3proxy"] = done.json()["file"]["id"]

    pages = 0
    for who, client in (("root", root), ("anonymous", anonymous), ("alice", alice)):
        for page in PAGES:
            for source in SOURCES if "{s}" in page else [None]:
                file_ids = [ids.get(source, ids["s3keys"])] if "{id}" in page else [None]
                if "{id}" in page and source is None:
                    file_ids = list(ids.values())
                for file_id in file_ids:
                    path = page.format(s=source, id=file_id)
                    evidence.response(f"GET {path} as {who}", client.get(path, follow_redirects=False))
                    pages += 1

    errors = 0
    json_post = [
        ("/-/files/upload/{s}/-/prepare", {"filename": "a.txt", "content_type": "text/plain", "size": 3}),
        (
            "/-/files/upload/{s}/-/prepare",
            {"filename": "big.png", "content_type": "image/png", "size": 10**9},
        ),
        ("/-/files/upload/{s}/-/prepare", {"filename": "../x", "size": 3}),
        ("/-/files/upload/{s}/-/prepare", {"filename": "a.txt", "size": "three"}),
        ("/-/files/upload/{s}/-/complete", {"upload_token": "forged"}),
        ("/-/files/upload/{s}/-/complete", {}),
        ("/-/files-s3/upload/{s}/-/multipart/create", {"filename": "m.bin", "size": 6 * 1024**2}),
        ("/-/files-s3/upload/{s}/-/multipart/sign", {"upload_token": "forged", "part_numbers": [1]}),
        ("/-/files-s3/upload/{s}/-/multipart/parts", {"upload_token": "forged"}),
        ("/-/files-s3/upload/{s}/-/multipart/complete", {"upload_token": "forged"}),
        ("/-/files-s3/upload/{s}/-/multipart/abort", {"upload_token": "forged"}),
        ("/-/files-s3/upload/{s}/-/bucket", {}),
    ]
    for who, client in (("alice", alice), ("anonymous", anonymous)):
        for source in SOURCES:
            for path, body in json_post:
                path = path.format(s=source)
                response = client.post(path, json=body)
                evidence.response(f"POST {path} {body} as {who}", response)
                errors += 1
                assert response.status_code < 500 or response.status_code in (502, 503), response.text
            bad = client.post(
                f"/-/files/upload/{source}/-/prepare",
                content=b"{nope",
                headers={"Content-Type": "application/json"},
            )
            evidence.response(f"bad JSON to {source}", bad)
            errors += 1

    # A token whose object never arrived, one whose object is the wrong size, and an S3 outage at confirm.
    early = alice.post("/-/files/upload/s3keys/-/prepare", json={"filename": "e.txt", "size": 3}).json()
    evidence.response(
        "complete before upload",
        alice.post("/-/files/upload/s3keys/-/complete", json={"upload_token": early["upload_token"]}),
    )
    http.post(early["upload_url"], data=early["upload_fields"], files={"file": ("e.txt", b"too long")})
    evidence.response(
        "complete with wrong size",
        alice.post("/-/files/upload/s3keys/-/complete", json={"upload_token": early["upload_token"]}),
    )
    down = alice.post("/-/files/upload/s3down/-/prepare", json={"filename": "d.txt", "size": 3})
    evidence.response("prepare on unreachable S3", down)
    if down.status_code == 200:
        evidence.response(
            "complete on unreachable S3",
            alice.post(
                "/-/files/upload/s3down/-/complete", json={"upload_token": down.json()["upload_token"]}
            ),
        )
    errors += 4
    evidence.response("delete as anonymous", anonymous.post(f"/-/files/{ids['s3keys']}/-/delete"))

    config_path = server.workdir / "datasette.json"
    commands = [
        ["sources", "-c", str(config_path)],
        ["sources", "--json", "-c", str(config_path)],
        ["cors", "s3keys", "--dry-run", "--apply", "-c", str(config_path), "--origin", server.url],
        ["cors", "s3broker", "-c", str(config_path), "--origin", server.url],
        ["doctor", "-c", str(config_path), "--origin", server.url],
        ["cleanup", "--dry-run", "-c", str(config_path), "--internal", server.internal],
    ]
    for command in commands:
        result = subprocess.run(
            [str(BIN / "datasette"), "files-s3", *command], capture_output=True, text=True, timeout=120
        )
        evidence.add(
            f"datasette files-s3 {' '.join(command)} (exit {result.returncode})",
            result.stdout + result.stderr,
        )
        assert "Traceback" not in result.stderr, result.stderr

    evidence.add("datasette serve log", server.log())
    evidence.add("datasette_files_sources.config", json.dumps(stored_configs(server.internal)))
    leaks = evidence.leaks(s3_server.endpoint_url, switch.url)
    print(
        f"\nsecrets: {pages} page fetches, {errors} error-path requests, {len(commands)} CLI runs, "
        f"{len(server.log().splitlines())} log lines searched"
    )
    assert leaks == []
    # The search itself works: the keys really are in what S3 is sent.
    assert SESSION_TOKEN in json.dumps(plan) or any(SESSION_TOKEN in text for _, text in evidence.items)


STORED_SECRETS = {
    "FS3_TEST_SECRET_ACCESS_KEY": None,  # the bucket's real secret: uploads must still work
    "FS3_TEST_SESSION_TOKEN": f"stored-session-token-{TAG}",
    "FS3_TEST_BROKER_SECRET": BROKER_SECRET,
}
URL_TOKEN = f"url-token-{TAG}"


def stored_configs(internal) -> dict[str, str]:
    with sqlite3.connect(internal) as db:
        return dict(db.execute("SELECT slug, config FROM datasette_files_sources"))


async def upload_and_download(ds, source: str, content: bytes) -> None:
    cookies = actor_cookies(ds)
    file = (await upload(ds, cookies, content, source=source))["file"]
    redirect = await ds.client.get(file["download_url"], cookies=cookies)
    assert redirect.status_code == 302, redirect.text
    assert httpx.get(redirect.headers["location"]).content == content


async def test_no_secret_is_stored_in_datasette_files_sources(bucket, tmp_path, monkeypatch):
    """datasette-files writes each source's config into its internal table at
    startup, again at every restart; with `$env` secrets resolved, the table
    would hold them. Both sources must still upload and download."""
    if not bucket.server.can_create_buckets:
        pytest.skip("the broker hands out the test keys; not meaningful against a real bucket")
    secrets = {**STORED_SECRETS, "FS3_TEST_SECRET_ACCESS_KEY": bucket.server.secret_access_key}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    broker = Broker(
        BROKER_SECRET,
        f"s3://{bucket.name}/brokered/",
        bucket.server.access_key_id,
        bucket.server.secret_access_key,
        secrets["FS3_TEST_SESSION_TOKEN"],
    ).start()
    sources = {
        "s3keys": {
            "storage": "s3",
            "config": bucket.source_config(
                secret_access_key={"$env": "FS3_TEST_SECRET_ACCESS_KEY"},
                session_token={"$env": "FS3_TEST_SESSION_TOKEN"},
            ),
        },
        "s3broker": {
            "storage": "s3",
            "config": {
                "credentials_url": f"{broker.url}?token={URL_TOKEN}",
                "credentials_url_secret": {"$env": "FS3_TEST_BROKER_SECRET"},
                "endpoint_url": bucket.server.endpoint_url,
            },
        },
    }
    internal = tmp_path / "internal.db"

    async def serve() -> Datasette:
        ds = Datasette(internal=str(internal), config=datasette_config(sources), secret="s")
        await ds.invoke_startup()
        return ds

    def assert_no_secret_stored():
        stored = stored_configs(internal)
        assert set(stored) == {"s3keys", "s3broker"}
        for text in stored.values():
            for secret in [*secrets.values(), URL_TOKEN, bucket.server.access_key_id]:
                assert secret not in text
        assert json.loads(stored["s3keys"])["bucket"] == bucket.name  # the rest is kept
        assert json.loads(stored["s3broker"])["credentials_url"] == broker.url

    try:
        first = await serve()
        assert_no_secret_stored()
        for source in ("s3keys", "s3broker"):
            await upload_and_download(first, source, b"before restart")
        # A row written by an earlier version, with its secrets: the restart rewrites it.
        with sqlite3.connect(internal) as db:
            db.execute(
                "UPDATE datasette_files_sources SET config = ? WHERE slug = 's3keys'",
                [json.dumps({"secret_access_key": secrets["FS3_TEST_SECRET_ACCESS_KEY"]})],
            )
        restarted = await serve()
        assert_no_secret_stored()
        for source in ("s3keys", "s3broker"):
            await upload_and_download(restarted, source, b"after restart")
    finally:
        broker.stop()
