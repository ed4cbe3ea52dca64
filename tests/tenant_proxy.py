"""An HTTP proxy in front of the test store that enforces a tenant's rights as S3 would.

Why it exists: moto enforces IAM only on header-signed calls, ignores session
policies and `s3:prefix` conditions, and answers every presigned request with
500 once IAM is on (docs/tenants.md). Denials to a tenant with scoped
credentials are therefore a fault the store cannot produce, so this proxy
produces them: a request outside the rights of the credentials it carries
gets S3's own answer (403, XML `AccessDenied` / `Access Denied` / RequestId),
everything else is forwarded to moto unchanged.

- Rights are per access key: `grant(key, policy)` with an IAM policy document
  (tests/s3_access.py evaluates it). AssumeRole calls sent *through* the
  proxy grant the session policy they carry to the keys STS returns, so a
  broker needs no help from the tests.
- Every request is logged (`requests`): method, path, query, operation,
  bucket, keys, list prefix, access key, status and whether it was denied.
- Bodies stream both ways. A browser POST upload is read only up to the start
  of its `file` part (the key and credentials are form fields before it);
  the rest is streamed on.
- The Host header is forwarded unchanged. Presigned URLs and header
  signatures cover the host the client used (the proxy's), so a signature
  that moto checks (header-signed calls with IAM on) still matches.
- Path-style addressing only (what the plugin uses with an endpoint_url).
- Browsers (e2e/test_tenant_uploads.py) need nothing more: CORS preflights
  (OPTIONS, no credentials) and the store's CORS headers on its answers are
  forwarded as they are. A preflight for a presigned POST names only the
  bucket; the log does not count it as reaching beyond the prefix.
- Not checked, as moto does not check them either: signatures, POST policy
  conditions. Denials carry no CORS headers, so a browser sees one as a
  network error rather than as AccessDenied (no browser test expects one).
"""

from __future__ import annotations

import base64
import http.client
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from tests.s3_access import Policy, S3Request, classify

CHUNK = 1024 * 1024
# S3 itself refuses a POST whose fields before the file exceed 20 KB; more than
# this is a broken client, not an upload to stream.
MAX_FORM_HEAD = 1024 * 1024
MAX_SMALL_BODY = 1024 * 1024  # STS calls and DeleteObjects bodies, read whole
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}
ERRORS = {
    "AccessDenied": (403, "Access Denied"),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "InvalidToken": (400, "The provided token is malformed or otherwise invalid."),
    "ExpiredToken": (400, "The provided token has expired."),
    "MaxPostPreDataLengthExceeded": (
        400,
        "Your POST request fields preceding the upload file were too large.",
    ),
    "MalformedXML": (
        400,
        "The XML you provided was not well-formed or did not validate against our published schema.",
    ),
}
STS_NS = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}


@dataclass(frozen=True)
class Grant:
    """What one access key may do; `policy` None means anything (an unscoped key)."""

    policy: Policy | None
    session_token: str | None = None
    expires_at: float | None = None


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the store side saw it."""

    method: str
    path: str
    query: str
    operation: str
    bucket: str | None
    keys: tuple[str, ...]
    prefix: str | None
    access_key_id: str | None
    status: int
    denied: str | None  # the S3 error code the proxy answered with, or None if forwarded

    def outside(self, bucket: str, prefix: str) -> bool:
        """True if this request reached beyond `bucket/prefix`: another key, a list
        of another prefix, another bucket, or a bucket-wide call.

        A browser's CORS preflight for a presigned POST names the bucket alone
        (the POST goes to the bucket's URL): it carries no credentials and S3
        answers it from the bucket's CORS rules, so it is inside unless it names
        another bucket or another key.
        """
        if self.operation.startswith("sts:"):
            return False
        if self.bucket != bucket:
            return True
        if self.keys:
            return any(not key.startswith(prefix) for key in self.keys)
        if self.operation == "PreflightCors":
            return False
        if self.operation.startswith("List"):
            return not (self.prefix or "").startswith(prefix)
        return True


class ScopedS3Proxy:
    """Loopback proxy to moto at `target_port`; see the module docstring."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.lock = threading.Lock()
        self.grants: dict[str, Grant] = {}
        self._log: list[LoggedRequest] = []
        self.largest_form_head = 0  # bytes of a POST form held at once, for the streaming test
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.proxy = self
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> ScopedS3Proxy:
        # A short poll interval: stop() waits for one, and every test stops a proxy.
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def grant(
        self,
        access_key_id: str,
        policy: dict | str | Policy | None,
        session_token: str | None = None,
        expires_at: float | None = None,
    ) -> None:
        """Let `access_key_id` do what `policy` allows (None: anything) until `expires_at`."""
        if policy is not None and not isinstance(policy, Policy):
            policy = Policy(policy)
        with self.lock:
            self.grants[access_key_id] = Grant(policy, session_token, expires_at)

    def revoke(self, access_key_id: str) -> None:
        """Forget a key: its requests now answer InvalidAccessKeyId."""
        with self.lock:
            self.grants.pop(access_key_id, None)

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request so far, oldest first (a copy)."""
        with self.lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self.lock:
            self._log.clear()

    def outside(self, bucket: str, prefix: str) -> list[LoggedRequest]:
        """The logged requests that reached beyond `bucket/prefix` (see LoggedRequest.outside)."""
        return [r for r in self.requests if r.outside(bucket, prefix)]

    def record(self, entry: LoggedRequest) -> None:
        with self.lock:
            self._log.append(entry)

    def decide(self, request: S3Request, credentials: Credentials) -> str | None:
        """The S3 error code to answer with, or None to forward."""
        if not request.accesses:
            return None
        if credentials.access_key_id is None:
            return "AccessDenied"
        with self.lock:
            grant = self.grants.get(credentials.access_key_id)
        if grant is None:
            return "InvalidAccessKeyId"
        if grant.session_token is not None:
            if credentials.session_token is None:
                return "InvalidAccessKeyId"
            if not secrets.compare_digest(credentials.session_token, grant.session_token):
                return "InvalidToken"
        if grant.expires_at is not None and time.time() >= grant.expires_at:
            return "ExpiredToken"
        if grant.policy is not None and not grant.policy.allows_all(request):
            return "AccessDenied"
        return None


@dataclass(frozen=True)
class Credentials:
    """The access key and session token a request carries, wherever they are."""

    access_key_id: str | None = None
    session_token: str | None = None


def credentials_of(headers, query: dict[str, list[str]], form: dict[str, str]) -> Credentials:
    """From the Authorization header (SigV4 or V2), a presigned URL's query, or POST form fields."""
    key = None
    # SigV2 presigned URLs spell the token parameter in lower case, SigV4 ones do not.
    query = {name.lower(): values[0] for name, values in query.items()}
    authorization = headers.get("Authorization") or ""
    if match := re.search(r"Credential=([^/,\s]+)/", authorization):
        key = match.group(1)
    elif match := re.match(r"AWS ([^:\s]+):", authorization):
        key = match.group(1)
    elif "x-amz-credential" in query:
        key = query["x-amz-credential"].split("/")[0]
    elif "awsaccesskeyid" in query:
        key = query["awsaccesskeyid"]
    elif "x-amz-credential" in form:
        key = form["x-amz-credential"].split("/")[0]
    elif "awsaccesskeyid" in form:
        key = form["awsaccesskeyid"]
    token = (
        headers.get("x-amz-security-token")
        or query.get("x-amz-security-token")
        or form.get("x-amz-security-token")
    )
    return Credentials(key, token)


def error_body(code: str, message: str) -> tuple[bytes, str]:
    """S3's XML error document and the request id in it."""
    request_id = secrets.token_hex(8).upper()
    host_id = base64.b64encode(secrets.token_bytes(48)).decode()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>{host_id}</HostId></Error>"
    )
    return body.encode(), request_id


class BadBody(Exception):
    """A body the proxy must read but cannot use; `code` is S3's error for it."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class BodyReader:
    """Reads a request body from the client, by Content-Length or chunked encoding."""

    def __init__(self, rfile, headers):
        self.rfile = rfile
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self.remaining = int(headers.get("Content-Length") or 0)
        self.done = not self.chunked and self.remaining == 0

    def read(self, limit: int = CHUNK) -> bytes:
        """Up to `limit` bytes; b"" at the end."""
        if self.done:
            return b""
        if self.chunked:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.done = True
                return b""
            data = self.rfile.read(size)
            self.rfile.readline()
            return data
        data = self.rfile.read(min(limit, self.remaining))
        self.remaining -= len(data)
        self.done = self.remaining == 0 or not data
        return data

    def read_all(self, limit: int, code: str = "MalformedXML") -> bytes:
        """The whole body, or BadBody(code) once it passes `limit` bytes."""
        data = b""
        while chunk := self.read():
            data += chunk
            if len(data) > limit:
                raise BadBody(code)
        return data

    def drain(self) -> None:
        while self.read():
            pass


def read_form_head(reader: BodyReader, content_type: str) -> tuple[bytes, dict[str, str], str | None]:
    """Read a multipart/form-data body up to the start of its `file` part.

    Returns the bytes read (to send on first), the fields before the file
    (names lower-cased, as S3 treats them) and the file's filename. Raises
    BadBody if the fields run past MAX_FORM_HEAD.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return reader.read_all(MAX_FORM_HEAD, "MaxPostPreDataLengthExceeded"), {}, None
    delimiter = b"--" + match.group(1).encode()
    buffer, fields, position = b"", {}, 0
    while True:
        start = buffer.find(delimiter, position)
        headers_end = buffer.find(b"\r\n\r\n", start) if start >= 0 else -1
        if headers_end >= 0:
            part_headers = buffer[start + len(delimiter) : headers_end].decode("utf-8", "replace")
            name = re.search(r'name="([^"]*)"', part_headers)
            filename = re.search(r'filename="([^"]*)"', part_headers)
            if name and name.group(1).lower() == "file":
                return buffer, fields, filename.group(1) if filename else None
            end = buffer.find(b"\r\n" + delimiter, headers_end + 4)
            if end >= 0:
                if name:
                    fields[name.group(1).lower()] = buffer[headers_end + 4 : end].decode("utf-8", "replace")
                position = end + 2
                continue
        if len(buffer) > MAX_FORM_HEAD:
            raise BadBody("MaxPostPreDataLengthExceeded")
        chunk = reader.read(64 * 1024)
        if not chunk:
            return buffer, fields, None
        buffer += chunk


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # parallel part uploads open several connections at once


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # the proxy keeps its own log
        pass

    def handle_expect_100(self):
        # Decide first: a denied upload must not be invited to send its body (see _continue).
        return True

    def _handle(self) -> None:
        proxy: ScopedS3Proxy = self.server.proxy
        raw_path, _, query_string = self.path.partition("?")
        query = parse_qs(query_string, keep_blank_values=True)
        reader = BodyReader(self.rfile, self.headers)
        self._expects_continue = (self.headers.get("Expect") or "").lower() == "100-continue"
        self._sent_continue = False
        first_bytes, form, form_key, delete_keys = b"", {}, None, ()
        try:
            if self.command == "POST" and raw_path == "/":
                return self._sts(proxy, reader)
            is_form = "multipart/form-data" in (self.headers.get("Content-Type") or "")
            if self.command == "POST" and is_form and raw_path.strip("/").count("/") == 0:
                self._continue()
                first_bytes, form, filename = read_form_head(reader, self.headers["Content-Type"])
                with proxy.lock:
                    proxy.largest_form_head = max(proxy.largest_form_head, len(first_bytes))
                form_key = form.get("key")
                if form_key is not None and filename is not None:
                    form_key = form_key.replace("${filename}", filename)
            elif self.command == "POST" and "delete" in query:
                self._continue()
                first_bytes = reader.read_all(MAX_SMALL_BODY)
                try:
                    document = ET.fromstring(first_bytes)
                except ET.ParseError:
                    raise BadBody("MalformedXML") from None
                delete_keys = tuple(k.text or "" for k in document.iter() if k.tag.endswith("Key"))
        except BadBody as bad:
            request = classify(self.command, raw_path, query, dict(self.headers))
            return self._deny(proxy, request, Credentials(), query_string, bad.code, reader)
        request = classify(self.command, raw_path, query, dict(self.headers), form_key, delete_keys)
        credentials = credentials_of(self.headers, query, form)
        code = proxy.decide(request, credentials)
        if code:
            return self._deny(proxy, request, credentials, query_string, code, reader)
        self._forward(
            proxy,
            reader,
            first_bytes,
            lambda status: proxy.record(self._entry(request, credentials, query_string, status, None)),
        )

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_OPTIONS = _handle

    def _continue(self) -> None:
        if self._expects_continue and not self._sent_continue:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
            self._sent_continue = True

    def _entry(self, request, credentials, query_string, status, denied) -> LoggedRequest:
        return LoggedRequest(
            method=self.command,
            path=self.path.partition("?")[0],
            query=query_string,
            operation=request.operation,
            bucket=request.bucket,
            keys=request.keys,
            prefix=request.prefix,
            access_key_id=credentials.access_key_id,
            status=status,
            denied=denied,
        )

    def _deny(self, proxy, request, credentials, query_string, code, reader) -> None:
        status, message = ERRORS[code]
        proxy.record(self._entry(request, credentials, query_string, status, code))
        if self._expects_continue and not self._sent_continue:
            # The client is still waiting to send its body: answer now and close, as S3 does.
            self.close_connection = True
        else:
            reader.drain()
        body, request_id = error_body(code, message)
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", request_id)
        self.send_header("Server", "AmazonS3")
        if self.command == "HEAD":
            body = b""
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _upstream_headers(self, chunked: bool) -> list[tuple[str, str]]:
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        if chunked:
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Transfer-Encoding", "chunked"))
        return headers

    def _forward(self, proxy, reader: BodyReader, first_bytes: bytes, log: Callable[[int], None]) -> None:
        """Send the request on to moto, streaming the body, then stream the answer back.

        `log(status)` runs before the client has its answer: a test reads the log
        as soon as its request returns, and on a busy machine a log written after
        the answer was sometimes not there yet ("nothing reached the store")."""
        self._continue()
        upstream = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=300)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self._upstream_headers(reader.chunked):
                upstream.putheader(name, value)
            upstream.endheaders()
            chunk = first_bytes
            while True:
                if chunk:
                    upstream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if reader.chunked else chunk)
                chunk = reader.read()
                if not chunk:
                    break
            if reader.chunked:
                upstream.send(b"0\r\n\r\n")
            response = upstream.getresponse()
            log(response.status)
            self._relay(response)
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        no_body = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        if length is not None:
            self.send_header("Content-Length", length)
        elif not no_body:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        while chunk := response.read(CHUNK):
            self.wfile.write(chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if length is None:
            self.wfile.write(b"0\r\n\r\n")

    def _sts(self, proxy: ScopedS3Proxy, reader: BodyReader) -> None:
        """Forward an STS call; learn the session policy and keys of an AssumeRole."""
        self._continue()
        body = reader.read_all(MAX_SMALL_BODY)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        action = form.get("Action", "?")
        upstream = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=60)
        try:
            headers = dict(self._upstream_headers(chunked=False))
            headers["Content-Length"] = str(len(body))
            upstream.request("POST", self.path, body=body, headers=headers)
            response = upstream.getresponse()
            answer = response.read()
        finally:
            upstream.close()
        if response.status == 200 and action == "AssumeRole":
            credentials = ET.fromstring(answer).find(".//sts:Credentials", STS_NS)
            expiration = credentials.findtext("sts:Expiration", namespaces=STS_NS)
            proxy.grant(
                credentials.findtext("sts:AccessKeyId", namespaces=STS_NS),
                form.get("Policy"),
                session_token=credentials.findtext("sts:SessionToken", namespaces=STS_NS),
                expires_at=datetime.fromisoformat(expiration.replace("Z", "+00:00")).timestamp(),
            )
        proxy.record(
            LoggedRequest("POST", "/", "", f"sts:{action}", None, (), None, None, response.status, None)
        )
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
