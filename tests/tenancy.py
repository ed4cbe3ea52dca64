"""The tenant test rig: scoped credentials from a broker, IAM on moto, the shipped policies.

- `TenantBroker`: the credentials broker the plugin talks to (`POST secret=...`),
  issuing real STS session credentials from moto, limited by the tenant
  session policy in docs/examples. It asks STS *through* a ScopedS3Proxy,
  which thereby learns the policy and enforces it (moto would not).
- `ScopedKeyBroker`: the same answers for a store without STS (LocalStack's
  S3-only run): fresh keys that the proxy grants only the tenant policy.
- `assert_stayed_inside`: the check every tenant test ends with, from the proxy's log.
- `IamMoto`: a moto_server process of its own with IAM enforcement switched
  on and off (`/moto-api/reset-auth`), for what moto itself does enforce:
  user and role policies on header-signed calls, sts:AssumeRole rights and
  trust policies. Never share it: a presigned request to it answers 500.
- `example_policy()`: the JSON policies shipped in docs/examples, for another
  bucket and prefix, so the tests check the very documents users copy.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.fault_injection import Broker
from tests.helpers import actor_cookies, upload
from tests.s3_servers import MotoServer
from tests.tenant_proxy import ScopedS3Proxy

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
EXAMPLE_BUCKET = "example-bucket"
EXAMPLE_PREFIXES = {"tenant-session-policy.json": "team-1/", "single-tenant-policy.json": "uploads/"}
ACCOUNT = "123456789012"  # moto's default account, also the one the examples name
TENANT_ROLE = "datasette-files-tenant"
BROKER_USER = "datasette-files-broker"


def example_policy(name: str, bucket: str = EXAMPLE_BUCKET, prefix: str | None = None) -> dict:
    """A policy from docs/examples with its example bucket (and prefix) replaced."""
    text = (EXAMPLES / name).read_text()
    if prefix is not None:
        text = text.replace(f"{EXAMPLE_BUCKET}/{EXAMPLE_PREFIXES[name]}", f"{EXAMPLE_BUCKET}/{prefix}")
        text = text.replace(f'"{EXAMPLE_PREFIXES[name]}*"', f'"{prefix}*"')
    return json.loads(text.replace(f":::{EXAMPLE_BUCKET}", f":::{bucket}"))


def tenant_policy(bucket: str, prefix: str) -> dict:
    """The session policy a broker attaches for a tenant at s3://bucket/prefix."""
    return example_policy("tenant-session-policy.json", bucket, prefix)


def aws_client(service: str, endpoint_url: str, key: str, secret: str, token: str | None = None, **config):
    """A boto3 client for a test endpoint, path-style, no retries (a denial should surface at once).

    `config` adds botocore Config options: `signature_version="s3v4"` presigns as the plugin does.
    """
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


_tenant_roles: dict[str, tuple[str, dict]] = {}


def set_up_tenant_role(endpoint_url: str, bucket: str) -> tuple[str, dict]:
    """IAM on moto as docs/examples describes it: the tenant role and the broker user.

    Returns the role ARN and the broker user's keys ({"key", "secret"}). Once
    per moto server (IAM names are unique there); each bucket adds its
    ceiling policy to the role. Call it while IAM is not enforced.
    """
    iam = aws_client("iam", endpoint_url, "admin", "admin")
    # A new moto on a recycled port starts empty: trust the cache only while the role exists.
    if endpoint_url not in _tenant_roles or outcome(lambda: iam.get_role(RoleName=TENANT_ROLE)) != "allowed":
        role = iam.create_role(
            RoleName=TENANT_ROLE,
            AssumeRolePolicyDocument=json.dumps(example_policy("sts-broker-role-trust.json")),
        )["Role"]["Arn"]
        keys = create_user(iam, BROKER_USER, example_policy("sts-broker-caller-policy.json"))
        _tenant_roles[endpoint_url] = (role, keys)
    iam.put_role_policy(
        RoleName=TENANT_ROLE,
        PolicyName=f"ceiling-{bucket}",
        PolicyDocument=json.dumps(example_policy("sts-broker-role-policy.json", bucket)),
    )
    return _tenant_roles[endpoint_url]


def create_user(iam, name: str, policy: dict | None) -> dict:
    """An IAM user with an inline policy (or none) and an access key: {"key", "secret"}."""
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


class IamMoto(MotoServer):
    """moto_server in its own process, with IAM enforcement that can be switched.

    `enforce(True)` makes every later call authenticate against moto's IAM
    (unknown keys: InvalidAccessKeyId); `enforce(False)` turns that off for
    set-up. The switch is process-wide, hence a process of its own.
    """

    def enforce(self, on: bool) -> None:
        # reset-auth takes the number of calls to let through before enforcing.
        answer = httpx.post(self.endpoint_url + "/moto-api/reset-auth", content=b"0" if on else b"inf")
        answer.raise_for_status()

    def iam(self):
        return aws_client("iam", self.endpoint_url, "admin", "admin")

    def s3(self, key: str, secret: str, token: str | None = None):
        return aws_client("s3", self.endpoint_url, key, secret, token)

    def sts(self, key: str, secret: str):
        return aws_client("sts", self.endpoint_url, key, secret)


class TenantBroker(Broker):
    """A broker handing out STS session credentials scoped to one tenant's prefix.

    Each good request calls AssumeRole (through `proxy`, so the proxy learns
    the session policy) with `tenant_policy(bucket, prefix)`. `lifetime`
    shorter than STS's 15-minute minimum is honoured by telling the proxy
    the shorter expiry. `move_to(prefix)` changes the tenant's folder for
    the credentials issued from then on. The switches of fault_injection's
    Broker (`failing`, `delay`, `answer`, `request_log`) work as there.
    """

    def __init__(
        self, secret: str, bucket: str, prefix: str, proxy: ScopedS3Proxy, role_arn: str, caller: dict
    ):
        super().__init__(secret, f"s3://{bucket}/{prefix}", "", "", "")
        self.bucket = bucket
        self.prefix = prefix
        self.proxy = proxy
        self.role_arn = role_arn
        self.sts = aws_client("sts", proxy.url, caller["key"], caller["secret"])
        self.issued: list[dict] = []

    def start(self) -> TenantBroker:
        # As Broker.start, with a short poll interval: stop() waits for one poll.
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def move_to(self, prefix: str) -> None:
        """Issue credentials for another folder of the same bucket from now on."""
        self.prefix = prefix
        self.s3_folder = f"s3://{self.bucket}/{prefix}"

    def issue(self) -> dict:
        answer = self.sts.assume_role(
            RoleArn=self.role_arn,
            RoleSessionName="tenant-" + self.prefix.strip("/").replace("/", "-"),
            Policy=json.dumps(tenant_policy(self.bucket, self.prefix)),
            DurationSeconds=max(900, int(self.lifetime)),
        )["Credentials"]
        expires = min(answer["Expiration"], datetime.now(timezone.utc) + timedelta(seconds=self.lifetime))
        if expires < answer["Expiration"]:
            self.proxy.grant(
                answer["AccessKeyId"],
                tenant_policy(self.bucket, self.prefix),
                session_token=answer["SessionToken"],
                expires_at=expires.timestamp(),
            )
        issued = {
            "AccessKeyId": answer["AccessKeyId"],
            "SecretAccessKey": answer["SecretAccessKey"],
            "SessionToken": answer["SessionToken"],
            "Expiration": expires.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "S3Folder": self.s3_folder,
        }
        with self.lock:
            self.issued.append(issued)
        return issued


class ScopedKeyBroker(Broker):
    """A broker for a store without STS: each answer is a fresh key and session
    token that `proxy` grants only `tenant_policy(bucket, prefix)`, for `lifetime`
    seconds, as TenantBroker's STS credentials are.

    The store itself must take any key id with `secret_access_key`, as
    LocalStack does (it checks presigned signatures against its fixed secret).
    """

    def __init__(self, secret: str, bucket: str, prefix: str, proxy: ScopedS3Proxy, secret_access_key: str):
        super().__init__(secret, f"s3://{bucket}/{prefix}", "", secret_access_key, "")
        self.policy = tenant_policy(bucket, prefix)
        self.proxy = proxy

    def issue(self) -> dict:
        # Shaped like STS session keys; fresh for every answer, so no two tenants share one.
        answer = super().issue() | {
            "AccessKeyId": "ASIA" + secrets.token_hex(8).upper(),
            "SessionToken": secrets.token_urlsafe(48),
        }
        self.proxy.grant(
            answer["AccessKeyId"],
            self.policy,
            session_token=answer["SessionToken"],
            expires_at=time.time() + self.lifetime,
        )
        return answer


def assert_stayed_inside(
    proxy: ScopedS3Proxy, bucket: str, prefix: str = "team-1/", denied_ok: tuple = ()
) -> None:
    """From the store's log: nothing reached beyond the prefix, and nothing was denied
    except the operations named in `denied_ok`."""
    assert proxy.outside(bucket, prefix) == []
    assert [r.operation for r in proxy.requests if r.denied and r.operation not in denied_ok] == []
    assert any(r.operation != "sts:AssumeRole" for r in proxy.requests), "nothing reached the store"


def brokered_source(credentials_url: str, secret: str, endpoint_url: str) -> dict:
    """A source config that takes its keys and S3Folder from a broker and reaches S3 at `endpoint_url`."""
    return {
        "credentials_url": credentials_url,
        "credentials_url_secret": secret,
        "endpoint_url": endpoint_url,
        "region": "us-east-1",
    }


async def round_trip(ds, source: str, content: bytes, filename: str) -> dict:
    """Upload through the plugin (browser POST to the store), download through its redirect,
    check the bytes; returns the registered file's JSON."""
    file = (await upload(ds, actor_cookies(ds), content, filename=filename, source=source))["file"]
    redirect = await ds.client.get(file["download_url"])
    assert httpx.get(redirect.headers["location"]).content == content
    return file


def outcome(call) -> str:
    """ "allowed", the S3 error code, or "HTTP <status>" for a bare error: how a call ended."""
    try:
        call()
    except ClientError as ex:
        return (
            ex.response.get("Error", {}).get("Code")
            or f"HTTP {ex.response['ResponseMetadata']['HTTPStatusCode']}"
        )
    return "allowed"


def plugin_calls(s3, bucket: str, prefix: str) -> dict[str, str]:
    """Every header-signed S3 call the plugin makes, inside `prefix`, and how each ended.

    The presigned ones (POST upload, part PUT, GET download) are not here:
    moto answers them 500 under IAM, so the proxy tests cover them.
    Bucket-level calls (doctor, `cors`, lifecycle) are under their own names.
    """
    key = f"{prefix}plugin-calls/probe.txt"
    multipart_key = f"{prefix}plugin-calls/big.bin"
    results = {
        "PutObject": outcome(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"0123456789" * 3)),
        "HeadObject": outcome(lambda: s3.head_object(Bucket=bucket, Key=key)),
        "GetObject (Range)": outcome(lambda: s3.get_object(Bucket=bucket, Key=key, Range="bytes=10-19")),
        "ListObjectsV2 (prefix)": outcome(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=prefix)),
        "ListMultipartUploads (prefix)": outcome(
            lambda: s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        ),
    }
    upload: dict = {}
    results["CreateMultipartUpload"] = outcome(
        lambda: upload.update(s3.create_multipart_upload(Bucket=bucket, Key=multipart_key))
    )
    upload_id = upload.get("UploadId", "no-upload")
    part: dict = {}
    results["UploadPart"] = outcome(
        lambda: part.update(
            s3.upload_part(Bucket=bucket, Key=multipart_key, UploadId=upload_id, PartNumber=1, Body=b"x" * 10)
        )
    )
    results["ListParts"] = outcome(
        lambda: s3.list_parts(Bucket=bucket, Key=multipart_key, UploadId=upload_id)
    )
    results["CompleteMultipartUpload"] = outcome(
        lambda: s3.complete_multipart_upload(
            Bucket=bucket,
            Key=multipart_key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part.get("ETag", "none")}]},
        )
    )
    aborted = (
        s3.create_multipart_upload(Bucket=bucket, Key=multipart_key)
        if results["CreateMultipartUpload"] == "allowed"
        else {}
    )
    results["AbortMultipartUpload"] = outcome(
        lambda: s3.abort_multipart_upload(
            Bucket=bucket, Key=multipart_key, UploadId=aborted.get("UploadId", "none")
        )
    )
    results["DeleteObject"] = outcome(lambda: s3.delete_object(Bucket=bucket, Key=key))
    return results


def bucket_calls(s3, bucket: str) -> dict[str, str]:
    """The bucket-level calls of `doctor` and `files-s3 cors`, and how each ended.

    A missing configuration (NoSuchCORSConfiguration, ...) means the call was allowed.
    """
    rule = {"AllowedMethods": ["GET"], "AllowedOrigins": ["https://example.com"]}
    lifecycle = {"ID": "probe", "Status": "Enabled", "Filter": {"Prefix": "x/"}, "Expiration": {"Days": 1}}
    return {
        "HeadBucket": outcome(lambda: s3.head_bucket(Bucket=bucket)),
        "GetBucketCors": outcome(lambda: s3.get_bucket_cors(Bucket=bucket)),
        "PutBucketCors": outcome(
            lambda: s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule]})
        ),
        "GetBucketLifecycleConfiguration": outcome(
            lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket)
        ),
        "PutBucketLifecycleConfiguration": outcome(
            lambda: s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": [lifecycle]}
            )
        ),
    }
