"""Hostile input against a real `datasette serve` process and this run's S3 server.

Property-based: hypothesis throws arbitrary JSON bodies, headers, cookies and
tokens at every endpoint the plugin serves or takes over. The properties:
never a 5xx from our code, never a registered file, never an object outside
the source's prefix. Then the token attacks and prefix escapes, one by one.
"""

from __future__ import annotations

import json
import posixpath
import re
import sqlite3
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.live_clients import complete, expect, multipart_call, post_to_bucket, prepare, signed_in
from tests.live_servers import DatasetteProcess, live_config

EXAMPLES = 100
SOURCES = ("s3files", "s3other", "s3proxy")
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PREFIXES = {"s3files": "files/", "s3other": "other/", "s3proxy": "proxy/"}
ULID_PATH = re.compile(r"^[0-9a-z]{26}/[^/]+$")


class HostileSite:
    """A bucket of its own on the run's S3 server and one Datasette with three s3 sources."""

    def __init__(self, s3_server, tmp_path_factory):
        self.s3 = s3_server
        self.bucket = f"hostile-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(self.bucket)
        sources = {
            name: {"storage": "s3", "config": self.s3.source_config(self.bucket, prefix=prefix.rstrip("/"))}
            for name, prefix in PREFIXES.items()
        }
        sources["s3proxy"]["config"]["direct_uploads"] = False
        sources["s3files"]["config"]["multipart_threshold"] = "5MiB"
        config = {
            "plugins": {"datasette-files": {"sources": sources}},
            "permissions": live_config({})["permissions"],
        }
        internal = tmp_path_factory.mktemp("hostile") / "internal.db"
        self.server = DatasetteProcess(config, internal=str(internal)).start()
        self.cookies = {
            "alice": self.server.cookie_for("alice"),
            "bob": self.server.cookie_for("bob"),
        }
        self.client = httpx.Client(base_url=self.server.url, timeout=30)
        self.requests = 0

    def stop(self):
        self.client.close()
        self.server.stop()

    def registered(self) -> list[tuple]:
        with sqlite3.connect(self.server.internal) as db:
            return list(db.execute("select id, path, source_id from datasette_files"))

    def keys(self) -> set[str]:
        response = self.s3.client().list_objects_v2(Bucket=self.bucket)
        return {item["Key"] for item in response.get("Contents", [])}

    def send(self, method: str, path: str, content: bytes = b"", headers=None, cookie=None) -> httpx.Response:
        self.requests += 1
        # Leading or trailing whitespace never reaches a server (HTTP strips it), and h11 refuses to send it.
        raw = {k: v.strip(" \t").encode("latin-1") for k, v in (headers or {}).items()}
        if cookie:
            raw["Cookie"] = f"ds_actor={cookie}".encode()
        return self.client.request(method, path, content=content, headers=raw)


@pytest.fixture(scope="module")
def hostile(s3_server, tmp_path_factory):
    server = HostileSite(s3_server, tmp_path_factory)
    yield server
    print(f"\nhostile input: {server.requests} requests sent")
    server.stop()


@pytest.fixture(autouse=True)
def nothing_registered_or_outside_prefixes(hostile, request):
    """After every test here: no 5xx in the access log and no object outside the prefixes."""
    yield
    assert [line for line in hostile.server.log().splitlines() if '" 5' in line and "HTTP/" in line] == []
    for key in hostile.keys():
        prefix = key.split("/", 1)[0] + "/"
        assert prefix in PREFIXES.values(), key
        assert ULID_PATH.match(key[len(prefix) :]), key


# --- strategies ---------------------------------------------------------------


def any_text(max_size: int, min_size: int = 0):
    """Text, or text with a lone surrogate ("\\ud800") in it, which JSON can carry."""
    with_surrogate = st.builds(
        lambda before, surrogate, after: before + surrogate + after,
        st.text(max_size=max_size // 2),
        st.characters(categories=["Cs"]),
        st.text(max_size=max_size // 2),
    )
    return st.text(min_size=min_size, max_size=max_size) | with_surrogate


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
# Far deeper than Python's recursion limit, yet under the 64 KiB body cap.
deep_json = st.one_of(
    st.integers(min_value=2_000, max_value=25_000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=2_000, max_value=8_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)
field_values = (
    json_values
    | any_text(max_size=300)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from(["", ".", "..", "../x", "a/b", "x" * 300, "\x00", "image/png", "text/html"])
)
known_fields = st.fixed_dictionaries(
    {},
    optional={
        name: field_values
        for name in ("filename", "content_type", "size", "upload_token", "part_numbers", "resume_token")
    },
)
bodies = (
    known_fields.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | deep_json.map(str.encode)
    | st.builds(
        # The known fields, then one of them nested deep, as the last member.
        lambda fields, name, deep: (
            json.dumps({**{k: v for k, v in fields.items() if k != name}, name: 0})[: -len("0}")] + deep + "}"
        ).encode(),
        known_fields,
        st.sampled_from(["filename", "size", "upload_token", "part_numbers", "resume_token"]),
        deep_json,
    )
    | st.binary(max_size=200)
    | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/plain",
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded",
        "",
    ]
) | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=80)
cookies = st.sampled_from(["alice", "bob", None, "garbage"])
POST_PATHS = [
    "/-/files/upload/{s}/-/prepare",
    "/-/files/upload/{s}/-/complete",
    "/-/files/upload/{s}/-/upload",
    "/-/files-s3/upload/{s}/-/multipart/create",
    "/-/files-s3/upload/{s}/-/multipart/sign",
    "/-/files-s3/upload/{s}/-/multipart/parts",
    "/-/files-s3/upload/{s}/-/multipart/complete",
    "/-/files-s3/upload/{s}/-/multipart/abort",
    "/-/files-s3/upload/{s}/-/bucket",
]
# Endpoints that only report (the bucket check): {"ok": true} from them changes nothing.
READ_ONLY_PATHS = {"/-/files-s3/upload/{s}/-/bucket"}
source_names = st.sampled_from([*SOURCES, "nope", "..", "%2e%2e", "s3files%00"])


def real_tokens(hostile) -> dict:
    """One genuine direct-upload token and one multipart token, issued once per module."""
    if not hasattr(hostile, "tokens"):
        with signed_in(hostile.server.url, hostile.cookies["alice"]) as alice:
            multipart = multipart_call(alice, "s3files", "create", {"filename": "t.bin", "size": 6 * 1024**2})
            hostile.tokens = {
                "post": prepare(alice, "s3files", "t.txt", 3, "text/plain")["upload_token"],
                "multipart": expect(multipart, "create", 200).json()["upload_token"],
            }
    return hostile.tokens


def cookie_value(hostile, who):
    if who == "garbage":
        return "not-a-signed-cookie"
    return hostile.cookies.get(who) if who else None


def assert_no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.method, response.request.url, response.text[:500])


# --- properties ------------------------------------------------------------------


@HYPOTHESIS
@given(
    path=st.sampled_from(POST_PATHS),
    source=source_names,
    body=bodies,
    content_type=content_types,
    extra=st.dictionaries(st.sampled_from(["Origin", "X-Forwarded-For", "Referer", "Accept"]), header_text),
    who=cookies,
)
def test_arbitrary_posts_never_500_never_register(hostile, path, source, body, content_type, extra, who):
    headers = {**extra, "Content-Type": content_type} if content_type else dict(extra)
    response = hostile.send("POST", path.format(s=source), body, headers, cookie_value(hostile, who))
    assert_no_server_error(response)
    if (
        response.headers.get("content-type", "").startswith("application/json")
        and path not in READ_ONLY_PATHS
    ):
        # Success is only ever a signed upload (a token), never anything done.
        assert response.json().get("ok") is not True or "upload_token" in response.json()
    assert hostile.registered() == []


@HYPOTHESIS
@given(
    kind=st.sampled_from(["post", "multipart"]),
    mutation=st.sampled_from(["flip", "cut", "insert", "truncate", "swap-halves"]),
    where=st.integers(min_value=0, max_value=10**6),
    char=st.characters(min_codepoint=33, max_codepoint=126),
    action=st.sampled_from(["complete", "sign", "parts", "abort", "multipart-complete"]),
    source=st.sampled_from(SOURCES),
    who=cookies,
)
def test_mutated_tokens_are_refused(hostile, kind, mutation, where, char, action, source, who):
    """A real token with bytes flipped, cut or added, sent to every token-taking endpoint."""
    token = real_tokens(hostile)[kind]
    position = where % len(token)
    if mutation == "flip":
        mutated = token[:position] + (char if token[position] != char else "~") + token[position + 1 :]
    elif mutation == "cut":
        mutated = token[:position] + token[position + 1 :]
    elif mutation == "insert":
        mutated = token[:position] + char + token[position:]
    elif mutation == "truncate":
        mutated = token[:position]
    else:
        mutated = token[position:] + token[:position]
    if mutated == token:
        return
    paths = {
        "complete": f"/-/files/upload/{source}/-/complete",
        "sign": f"/-/files-s3/upload/{source}/-/multipart/sign",
        "parts": f"/-/files-s3/upload/{source}/-/multipart/parts",
        "abort": f"/-/files-s3/upload/{source}/-/multipart/abort",
        "multipart-complete": f"/-/files-s3/upload/{source}/-/multipart/complete",
    }
    body = json.dumps({"upload_token": mutated, "part_numbers": [1]}).encode()
    response = hostile.send(
        "POST", paths[action], body, {"Content-Type": "application/json"}, cookie_value(hostile, who)
    )
    assert_no_server_error(response)
    assert response.status_code in (400, 403, 404), response.text
    assert hostile.registered() == []


@HYPOTHESIS
@given(
    file_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-%./", max_size=40),
    suffix=st.sampled_from(["", ".json", "/download", "/thumbnail", "/-/delete", "/-/update"]),
    who=cookies,
)
def test_arbitrary_file_urls_never_500(hostile, file_id, suffix, who):
    method = "POST" if suffix.startswith("/-/") else "GET"
    response = hostile.send(method, f"/-/files/df-{file_id}{suffix}", b"", {}, cookie_value(hostile, who))
    assert_no_server_error(response)


@HYPOTHESIS
@given(filename=any_text(min_size=1, max_size=80), source=st.sampled_from(["s3files", "s3other"]))
def test_any_filename_signs_only_a_key_inside_the_prefix(hostile, filename, source):
    response = hostile.send(
        "POST",
        f"/-/files/upload/{source}/-/prepare",
        json.dumps({"filename": filename, "content_type": "text/plain", "size": 3}).encode(),
        {"Content-Type": "application/json"},
        hostile.cookies["alice"],
    )
    assert_no_server_error(response)
    if response.status_code == 200:
        key = response.json()["upload_fields"]["key"]
        assert key.startswith(PREFIXES[source])
        assert posixpath.normpath(key) == key
        assert ULID_PATH.match(key[len(PREFIXES[source]) :]), key
    else:
        assert response.status_code == 400


# --- tokens, one attack each ------------------------------------------------------------


@pytest.fixture
def alice(hostile):
    with signed_in(hostile.server.url, hostile.cookies["alice"]) as client:
        yield client


def uploaded_plan(alice, http, source="s3files", content=b"abc"):
    plan = prepare(alice, source, "x.txt", len(content), "text/plain")
    post_to_bucket(http, plan, content, "x.txt", "text/plain")
    return plan


def cleanup(hostile, plan, source="s3files"):
    """Remove what a refused token left so the next test starts clean."""
    hostile.s3.client().delete_object(Bucket=hostile.bucket, Key=plan["upload_fields"]["key"])


def test_tampered_token_is_refused(hostile, alice, http):
    plan = uploaded_plan(alice, http)
    token = plan["upload_token"]
    payload, _, signature = token.rpartition(".")
    for tampered in (payload + "." + signature[::-1], payload[::-1] + "." + signature, token + "x"):
        response = complete(alice, "s3files", tampered)
        assert response.status_code == 400
        assert "not valid" in response.json()["errors"][0]
    assert hostile.registered() == []
    cleanup(hostile, plan)


def test_expired_token_is_refused(hostile, alice, http):
    """A ticket signed with the server's secret but whose confirm window has passed."""
    from datasette.app import Datasette

    from datasette_files_s3 import tickets

    plan = uploaded_plan(alice, http)
    signer = Datasette(memory=True, secret=hostile.server.secret)
    ticket = tickets.read_ticket(signer, plan["upload_token"])
    expired = tickets.UploadTicket(**{**ticket.__dict__, "expires_at": time.time() - 2 * 3600})
    response = complete(alice, "s3files", tickets.sign_ticket(signer, expired))
    assert response.status_code == 400
    assert "expired" in response.json()["errors"][0]
    assert hostile.registered() == []
    cleanup(hostile, plan)


def test_replayed_token_registers_once(hostile, alice, http):
    plan = uploaded_plan(alice, http)
    first = complete(alice, "s3files", plan["upload_token"])
    assert first.status_code == 201
    again = [complete(alice, "s3files", plan["upload_token"]) for _ in range(3)]
    assert [r.status_code for r in again] == [409, 409, 409]
    assert "already been completed" in again[0].json()["errors"][0]
    assert [row[0] for row in hostile.registered()] == [first.json()["file"]["id"]]
    delete = alice.post(f"/-/files/{first.json()['file']['id']}/-/delete")
    assert delete.status_code == 200
    assert hostile.registered() == []


def test_token_for_one_source_is_refused_by_another(hostile, alice, http):
    plan = uploaded_plan(alice, http)
    response = complete(alice, "s3other", plan["upload_token"])
    assert response.status_code == 400
    assert "belongs to source 's3files'" in response.json()["errors"][0]
    response = multipart_call(alice, "s3other", "complete", {"upload_token": plan["upload_token"]})
    assert response.status_code == 400
    assert hostile.registered() == []
    cleanup(hostile, plan)


def test_token_from_another_actor_is_refused(hostile, alice, http):
    plan = uploaded_plan(alice, http)
    with signed_in(hostile.server.url, hostile.cookies["bob"]) as bob:
        response = complete(bob, "s3files", plan["upload_token"])
    assert response.status_code == 403
    assert hostile.registered() == []
    cleanup(hostile, plan)


# --- filenames built to escape the prefix ------------------------------------------------

ESCAPES = [
    "../escape.txt",
    "../../../etc/passwd",
    "..",
    ".",
    "a/../../b.txt",
    "..\\..\\windows.txt",
    "%2e%2e%2fencoded.txt",
    "..%2f..%2fencoded.txt",
    "\u2215division-slash.txt",
    "\uff0ffullwidth-slash.txt",
    "nul\x00byte.txt",
    "\u202egnp.exe",
    "/absolute.txt",
    "  ../spaces.txt",
    "." * 255,
    "é" * 200,
]


@pytest.mark.parametrize("filename", ESCAPES)
@pytest.mark.parametrize("route", ["direct", "multipart", "proxy"])
def test_filenames_cannot_escape_the_prefix(hostile, alice, http, filename, route):
    """Refused (400), or stored under the source's prefix as <id>/<one plain name>."""
    content = b"escape attempt"
    if route == "direct":
        response = prepare_raw(alice, "s3files", filename, len(content))
        if response.status_code == 400:
            return
        plan = response.json()
        post_to_bucket(http, plan, content, "x", "text/plain")
        done = complete(alice, "s3files", plan["upload_token"])
    elif route == "multipart":
        response = multipart_call(
            alice,
            "s3files",
            "create",
            {"filename": filename, "content_type": "text/plain", "size": len(content)},
        )
        if response.status_code == 400:
            return
        token = response.json()["upload_token"]
        urls = expect(
            multipart_call(alice, "s3files", "sign", {"upload_token": token, "part_numbers": [1]}),
            "sign",
            200,
        )
        assert http.put(urls.json()["urls"]["1"], content=content).status_code == 200
        done = multipart_call(alice, "s3files", "complete", {"upload_token": token})
    else:
        response = prepare_raw(alice, "s3proxy", filename, len(content))
        if response.status_code == 400:
            return
        plan = response.json()
        sent = alice.post(
            plan["upload_url"], data=plan["upload_fields"], files={"file": ("x", content, "text/plain")}
        )
        assert sent.status_code == 200, sent.text
        done = complete(alice, "s3proxy", plan["upload_token"])
    assert done.status_code in (200, 201), done.text
    file_id = done.json()["file"]["id"]
    [(_, path, _)] = [row for row in hostile.registered() if row[0] == file_id]
    assert ULID_PATH.match(path) and posixpath.normpath(path) == path, path
    assert alice.post(f"/-/files/{file_id}/-/delete").status_code == 200
    assert hostile.registered() == []


def prepare_raw(client, source, filename, size):
    return client.post(
        f"/-/files/upload/{source}/-/prepare",
        json={"filename": filename, "content_type": "text/plain", "size": size},
    )


@pytest.mark.parametrize(
    "action,body",
    [
        ("prepare", b"null"),
        ("prepare", b"[]"),
        ("prepare", b'{"filename": 5, "size": 3}'),
        ("prepare", b'{"filename": "a.txt", "content_type": null, "size": 3}'),
        ("prepare", b'{"filename": "..", "size": 3}'),
        ("complete", b'"token"'),
        ("complete", b'{"upload_token": ["tok_x"]}'),
    ],
)
def test_proxy_mode_refuses_what_datasette_files_would_500_on(hostile, action, body):
    """datasette-files' own prepare/complete crash (500) on these, or keep ".." as a name; we answer 400."""
    response = hostile.send(
        "POST",
        f"/-/files/upload/s3proxy/-/{action}",
        body,
        {"Content-Type": "application/json"},
        hostile.cookies["alice"],
    )
    assert response.status_code == 400, response.text
    assert response.json()["ok"] is False
