"""Loopback servers that fail on demand, for the reliability and fault tests.

- `TcpSwitch`: a TCP forwarder in front of the S3 server that can be cut and
  restored. Cutting it makes S3 unreachable (connections refused, open ones
  reset) while the server keeps its in-memory state; stopping the server
  itself would lose every bucket and object.
- `FlakyS3Proxy`: an HTTP forwarder that answers 503 to the first N PUTs of a
  chosen multipart part, as a flaky network or an S3 hiccup would, and logs
  every request it forwards (so a test can count what reached S3).
  With `ignore_range` it plays a store that ignores Range.
  With `refuse_form_posts`, it answers every form POST (POST Object) with
  501 NotImplemented, as Cloudflare R2 and Backblaze B2 do.
- `Broker`: a credentials broker (`POST secret=...` -> JSON keys) with a switch
  to make it fail.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.live_servers import free_port


class TcpSwitch:
    """Forward 127.0.0.1:port to 127.0.0.1:target_port until cut()."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpSwitch:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Refuse new connections and reset open ones: S3 is now unreachable."""
        listener, self._listener = self._listener, None
        if listener:
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for s in connections:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self.start()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output quiet
        pass

    def _forward(self) -> None:
        proxy: FlakyS3Proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = parse_qs(urlparse(self.path).query)
        with proxy.lock:
            proxy.requests.append((self.command, self.path))
            proxy.ranges.append((self.path, self.headers.get("Range")))
        if proxy.refuse_form_posts and self.is_form_post():
            return self.answer_not_implemented()
        part = query.get("partNumber", [None])[0]
        if self.command == "PUT" and part is not None:
            with proxy.lock:
                proxy.part_attempts[int(part)] = proxy.part_attempts.get(int(part), 0) + 1
                fail = proxy.failures_left.get(int(part), 0) > 0
                if fail:
                    proxy.failures_left[int(part)] -= 1
            if fail:
                message = b"<Error><Code>ServiceUnavailable</Code></Error>"
                self.send_response(503)
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)
                return
        upstream = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=120)
        dropped = (
            ("connection", "keep-alive", "range") if proxy.ignore_range else ("connection", "keep-alive")
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "connection", "transfer-encoding", "keep-alive"):
                self.send_header(key, value)
        # A HEAD answer has no body but tells the object's size: pass that on.
        length = response.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self._send_counted(data)
        upstream.close()

    def is_form_post(self) -> bool:
        return self.command == "POST" and self.headers.get("Content-Type", "").startswith(
            "multipart/form-data"
        )

    def answer_not_implemented(self) -> None:
        """POST Object refused as R2 and B2 refuse it; the store's CORS rule still
        applies to the answer, so the page can read the 501."""
        message = (
            b"<Error><Code>NotImplemented</Code><Message>POST Object is not implemented</Message></Error>"
        )
        self.send_response(501)
        if self.headers.get("Origin"):
            self.send_header("Access-Control-Allow-Origin", self.headers["Origin"])
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        self.wfile.write(message)

    def _send_counted(self, data: bytes) -> None:
        """Send the body in 64 KiB pieces, counting in `body_bytes_sent` what the
        client took before it hung up (a reader that stops early closes the socket)."""
        proxy: FlakyS3Proxy = self.server.proxy
        try:
            for start in range(0, len(data), 64 * 1024):
                self.wfile.write(data[start : start + 64 * 1024])
                with proxy.lock:
                    proxy.body_bytes_sent += min(64 * 1024, len(data) - start)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            proxy.answered.set()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_OPTIONS = _forward


class FlakyS3Proxy:
    """HTTP forwarder to an S3 server; `fail_part(n, times)` makes part n's next PUTs answer 503.

    `requests` lists every request received, as (method, path with query);
    `ranges` each one's path and Range header (None without one).
    """

    def __init__(self, target_port: int, refuse_form_posts: bool = False):
        self.target_port = target_port
        self.refuse_form_posts = refuse_form_posts
        self.lock = threading.Lock()
        self.failures_left: dict[int, int] = {}
        self.part_attempts: dict[int, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.ranges: list[tuple[str, str | None]] = []
        # ignore_range: forward without the Range header, as a store that
        # ignores Range would answer (moto checks no signature, so it serves).
        self.ignore_range = False
        self.body_bytes_sent = 0
        self.answered = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self.server.daemon_threads = True
        self.server.proxy = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FlakyS3Proxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def methods_for(self, filename: str) -> list[str]:
        """The methods of the requests for an object named `filename`, in order;
        reads of its ACL (`?acl`, confirm's check) are not reads of the object."""
        return [
            method
            for method, path in self.requests
            if path.split("?", 1)[0].endswith("/" + filename) and not path.endswith("?acl")
        ]

    def fail_part(self, number: int, times: int) -> None:
        with self.lock:
            self.failures_left[number] = times

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _BrokerHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        broker: Broker = self.server.broker
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        with broker.lock:
            broker.requests += 1
            broker.request_log.append((self.headers.get("Content-Type"), form))
        time.sleep(broker.delay)
        if broker.failing:
            status, payload = 503, {"error": "broker is down"}
        elif form.get("secret") != [broker.secret]:
            status, payload = 403, {"error": "wrong secret"}
        else:
            try:
                status, payload = 200, broker.answer or broker.issue()
            except Exception as ex:  # a subclass's issuer failed (its STS is down, say)
                status, payload = 502, {"error": f"could not issue credentials ({type(ex).__name__})"}
        body = (
            broker.raw_answer
            if status == 200 and broker.raw_answer is not None
            else json.dumps(payload).encode()
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Broker:
    """A credentials broker on loopback handing out fixed keys for one S3 folder.

    Switches for tests: `failing` (answer 503), `lifetime` (seconds the keys
    last), `delay` (seconds before answering), `answer` (a JSON body to send
    instead), `raw_answer` (bytes to send instead, JSON or not); `request_log`
    keeps each request's content type and form.
    """

    def __init__(
        self,
        secret: str,
        s3_folder: str,
        access_key_id: str,
        secret_access_key: str,
        session_token: str,
        failing: bool = False,
    ):
        self.secret = secret
        self.s3_folder = s3_folder
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.failing = failing
        self.lifetime = 3600.0
        self.delay = 0.0
        self.answer: dict | None = None
        self.raw_answer: bytes | None = None
        self.requests = 0
        self.request_log: list[tuple[str | None, dict]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokerHandler)
        self.server.daemon_threads = True
        self.server.broker = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/credentials"

    def issue(self) -> dict:
        """The JSON answer to a good request: the fixed keys, lasting `lifetime` seconds.
        Subclasses issue other keys (tests/tenancy.py: scoped STS credentials)."""
        expires = datetime.now(timezone.utc) + timedelta(seconds=self.lifetime)
        return {
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "SessionToken": self.session_token,
            "Expiration": expires.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "S3Folder": self.s3_folder,
        }

    def start(self) -> Broker:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
