"""docs/examples/sts_broker.py, the reference broker for self-hosters, run as its own process.

Against moto with IAM enforced: the documented IAM set-up (caller policy,
trust policy, role policy) is enough for its AssumeRole, and an identity
outside the trust policy is refused. moto ignores session policies and
cannot serve presigned requests with IAM on, so the end-to-end test runs
the plugin through the scoped proxy, which enforces the session policy the
broker actually sent (learned from its AssumeRole call).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime

import httpx
import pytest

from tests.live_servers import free_port, wait_for_http
from tests.tenancy import (
    EXAMPLES,
    IamMoto,
    aws_client,
    brokered_source,
    create_user,
    example_policy,
    outcome,
    round_trip,
    set_up_tenant_role,
)
from tests.tenant_proxy import ScopedS3Proxy

# moto itself: its IAM and STS, which LocalStack's S3-only run does not have.
pytestmark = pytest.mark.store("moto", reason="uses moto's IAM and STS")


SECRET = "team-1-shared-secret-4f1c"
SCRIPT = EXAMPLES / "sts_broker.py"


def load_example():
    spec = importlib.util.spec_from_file_location("sts_broker_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BrokerProcess:
    """`python docs/examples/sts_broker.py config.json` on a free port, as the given AWS identity."""

    def __init__(self, tmp_path, config: dict, identity: dict):
        self.config_path = tmp_path / f"broker-{uuid.uuid4().hex[:6]}.json"
        self.config_path.write_text(json.dumps(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/credentials"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(
            AWS_ACCESS_KEY_ID=identity["key"],
            AWS_SECRET_ACCESS_KEY=identity["secret"],
            AWS_DEFAULT_REGION="us-east-1",
        )
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> BrokerProcess:
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(self.config_path), "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_for_http(self.url, process=self.process)
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.output = self.process.communicate(timeout=10)[0].decode(errors="replace")


def broker_config(bucket: str, role_arn: str, sts_endpoint_url: str) -> dict:
    return {
        "bucket": bucket,
        "role_arn": role_arn,
        "region": "us-east-1",
        "sts_endpoint_url": sts_endpoint_url,
        "duration_seconds": 900,
        "tenants": {
            "team-1": {"prefix": "team-1/", "secret_sha256": hashlib.sha256(SECRET.encode()).hexdigest()},
            "team-2": {"prefix": "team-2/", "secret_sha256": hashlib.sha256(b"another-secret").hexdigest()},
        },
    }


def test_session_policy_is_the_documented_tenant_policy():
    documented = json.loads((EXAMPLES / "tenant-session-policy.json").read_text())
    assert load_example().session_policy("example-bucket", "team-1/") == documented


@pytest.mark.parametrize(
    "change,message",
    [
        ({"prefix": "team-1"}, "prefix must look like"),
        ({"prefix": "team-1/../team-2/"}, "prefix must look like"),
        ({"secret_sha256": "not-a-digest"}, "secret_sha256"),
        ({"secret_sha256": hashlib.sha256(b"another-secret").hexdigest()}, "share a secret"),
    ],
)
def test_config_mistakes_are_named_at_start(tmp_path, change, message):
    config = broker_config("b", "arn:aws:iam::123456789012:role/r", "http://127.0.0.1:1")
    config["tenants"]["team-1"].update(change)
    path = tmp_path / "broker.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        load_example().load_config(str(path))


@pytest.fixture(scope="module")
def iam_store():
    """moto with IAM enforced and the documented set-up: tenant role, broker user, a stranger."""
    server = IamMoto().start()
    aws_client("s3", server.endpoint_url, "admin", "admin").create_bucket(Bucket="shared")
    role_arn, broker = set_up_tenant_role(server.endpoint_url, "shared")
    stranger = create_user(server.iam(), "not-the-broker", example_policy("sts-broker-caller-policy.json"))
    server.enforce(True)
    yield server, role_arn, broker, stranger
    server.stop()


def test_documented_iam_is_enough_for_the_broker_to_issue_working_credentials(iam_store, tmp_path):
    server, role_arn, broker, _ = iam_store
    with BrokerProcess(tmp_path, broker_config("shared", role_arn, server.endpoint_url), broker) as process:
        answer = httpx.post(process.url, data={"secret": SECRET})
    assert answer.status_code == 200, answer.text
    issued = answer.json()
    assert set(issued) == {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration", "S3Folder"}
    assert issued["S3Folder"] == "s3://shared/team-1/"
    assert issued["Expiration"].endswith("Z")
    lifetime = datetime.fromisoformat(issued["Expiration"].replace("Z", "+00:00")).timestamp() - time.time()
    assert 800 < lifetime <= 900
    # moto enforces the role's own policy and the session token on header-signed calls.
    s3 = aws_client(
        "s3", server.endpoint_url, issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"]
    )
    assert outcome(lambda: s3.put_object(Bucket="shared", Key="team-1/hello.txt", Body=b"hi")) == "allowed"


def test_wrong_or_missing_secret_and_wrong_method_are_refused_without_echoing(iam_store, tmp_path):
    server, role_arn, broker, _ = iam_store
    with BrokerProcess(tmp_path, broker_config("shared", role_arn, server.endpoint_url), broker) as process:
        wrong = httpx.post(process.url, data={"secret": "guessed-secret-value"})
        missing = httpx.post(process.url, data={})
        got = httpx.get(process.url)
    assert (wrong.status_code, wrong.json()) == (403, {"error": "unknown secret"})
    assert missing.status_code == 400 and "secret=" in missing.json()["error"]
    assert got.status_code == 405
    assert "guessed-secret-value" not in process.output


def test_identity_outside_the_trust_policy_gets_502_naming_sts(iam_store, tmp_path):
    server, role_arn, _, stranger = iam_store
    with BrokerProcess(tmp_path, broker_config("shared", role_arn, server.endpoint_url), stranger) as process:
        answer = httpx.post(process.url, data={"secret": SECRET})
    assert answer.status_code == 502
    assert answer.json() == {"error": "STS refused AssumeRole (AccessDenied)"}
    assert SECRET not in process.output and stranger["secret"] not in process.output


async def test_plugin_uploads_and_downloads_inside_the_prefix_with_the_brokers_credentials(
    s3_server, tmp_path, make_datasette
):
    bucket = f"shared-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    s3_server.client().put_object(Bucket=bucket, Key="team-2/theirs.txt", Body=b"theirs")
    role_arn, broker = set_up_tenant_role(s3_server.endpoint_url, bucket)
    # The proxy stands in for IAM: moto ignores session policies and fails presigned requests under IAM.
    proxy = ScopedS3Proxy(s3_server.port).start()
    try:
        with BrokerProcess(tmp_path, broker_config(bucket, role_arn, proxy.url), broker) as process:
            source = brokered_source(process.url, SECRET, proxy.url)
            ds = await make_datasette({"team1": {"storage": "s3", "config": source}})
            await round_trip(ds, "team1", b"from team one", "t1.txt")
            issued = httpx.post(process.url, data={"secret": SECRET}).json()
        # Every key the broker issued is limited by the session policy it sent, as documented.
        policies = [grant.policy.document for grant in proxy.grants.values()]
        assert len(policies) == 2 and all(
            p == load_example().session_policy(bucket, "team-1/") for p in policies
        )
        touched = [key for r in proxy.requests for key in r.keys]
        assert touched and proxy.outside(bucket, "team-1/") == []
        s3 = aws_client(
            "s3", proxy.url, issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"]
        )
        assert outcome(lambda: s3.get_object(Bucket=bucket, Key="team-2/theirs.txt")) == "AccessDenied"
    finally:
        proxy.stop()
