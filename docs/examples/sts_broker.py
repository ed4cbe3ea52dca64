"""A reference credentials broker for datasette-files-s3: one bucket, many tenants.

Each Datasette instance (one per team) is configured with

    credentials_url: https://broker.example.com/credentials
    credentials_url_secret: <that team's secret>

and asks this broker `POST secret=...` (form-encoded). The broker finds the
tenant whose secret it is, calls STS AssumeRole with an inline session policy
that allows only `s3://BUCKET/<tenant prefix>`, and answers the JSON the
plugin expects:

    {"AccessKeyId": ..., "SecretAccessKey": ..., "SessionToken": ...,
     "Expiration": "2026-11-24T10:00:00Z", "S3Folder": "s3://BUCKET/team-1/"}

The session policy is what limits a tenant: the role itself may touch the
whole bucket (sts-broker-role-policy.json), and the effective rights are the
intersection of the two. IAM set-up, in this directory:

- sts-broker-caller-policy.json: for the identity this broker runs as
  (sts:AssumeRole on the tenant role, nothing else);
- sts-broker-role-trust.json: the tenant role's trust policy (only the broker);
- sts-broker-role-policy.json: the tenant role's permissions (the ceiling);
- tenant-session-policy.json: what session_policy() below builds for team-1.

Config is a JSON file (it holds no secrets, only their SHA-256):

    {
      "bucket": "example-bucket",
      "role_arn": "arn:aws:iam::123456789012:role/datasette-files-tenant",
      "region": "us-east-1",
      "duration_seconds": 3600,
      "tenants": {
        "team-1": {"prefix": "team-1/", "secret_sha256": "<hex digest of the secret>"}
      }
    }

Optional: "sts_endpoint_url" (a test store). The broker's own AWS keys come
from boto3's default chain (environment, instance role, ...).

Run: `python sts_broker.py broker.json --port 8030` (needs boto3 and uvicorn).
Put TLS in front of it: the secret travels in the request body.
This file is an example, not part of the datasette-files-s3 package.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import re
from urllib.parse import parse_qs

import boto3
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger("sts_broker")
MAX_BODY = 4096
TENANT_NAME = re.compile(r"^[\w+=,.@-]{1,40}$")  # it becomes part of the STS session name
OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:GetObjectAcl",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def session_policy(bucket: str, prefix: str) -> dict:
    """The inline session policy for one tenant: objects under `prefix`, and
    listing only with an `s3:prefix` under it.

    No s3:ListBucketMultipartUploads: AWS offers no s3:prefix condition for it,
    so granting it would show every tenant's in-progress upload keys.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "FilesUnderTheTenantPrefix",
                "Effect": "Allow",
                "Action": OBJECT_ACTIONS,
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
            },
            {
                "Sid": "ListOnlyUnderTheTenantPrefix",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}},
            },
        ],
    }


def load_config(path: str) -> dict:
    """Read and check the config file; ValueError says what is wrong."""
    with open(path) as f:
        config = json.load(f)
    for name in ("bucket", "role_arn", "tenants"):
        if not config.get(name):
            raise ValueError(f"config needs {name}")
    for tenant, entry in config["tenants"].items():
        if not TENANT_NAME.match(tenant):
            raise ValueError(f"tenant name {tenant!r}: letters, digits and +=,.@_- only")
        prefix = entry.get("prefix", "")
        if not prefix.endswith("/") or prefix.startswith("/") or ".." in prefix.split("/"):
            raise ValueError(f"tenant {tenant}: prefix must look like 'team-1/'")
        if not re.fullmatch(r"[0-9a-f]{64}", entry.get("secret_sha256", "")):
            raise ValueError(f"tenant {tenant}: secret_sha256 must be a hex SHA-256 digest")
    digests = [entry["secret_sha256"] for entry in config["tenants"].values()]
    if len(set(digests)) != len(digests):
        raise ValueError("two tenants share a secret")
    return config


def tenant_for(config: dict, secret: str) -> str | None:
    """The tenant whose secret this is, comparing digests in constant time."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    found = None
    for tenant, entry in config["tenants"].items():
        if hmac.compare_digest(digest, entry["secret_sha256"]):
            found = tenant
    return found


class Broker:
    """The ASGI app: `POST secret=...` -> scoped STS credentials as JSON."""

    def __init__(self, config: dict, sts_client=None):
        self.config = config
        self.sts = sts_client or boto3.client(
            "sts", region_name=config.get("region", "us-east-1"), endpoint_url=config.get("sts_endpoint_url")
        )

    def credentials_for(self, tenant: str) -> dict:
        """AssumeRole for one tenant, limited by its session policy (blocking: run it in a thread)."""
        bucket, prefix = self.config["bucket"], self.config["tenants"][tenant]["prefix"]
        answer = self.sts.assume_role(
            RoleArn=self.config["role_arn"],
            RoleSessionName=f"datasette-files-{tenant}",
            Policy=json.dumps(session_policy(bucket, prefix)),
            DurationSeconds=int(self.config.get("duration_seconds", 3600)),
        )["Credentials"]
        return {
            "AccessKeyId": answer["AccessKeyId"],
            "SecretAccessKey": answer["SecretAccessKey"],
            "SessionToken": answer["SessionToken"],
            "Expiration": answer["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "S3Folder": f"s3://{bucket}/{prefix}",
        }

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        if scope["method"] != "POST":
            return await _json(send, 405, {"error": "POST secret=... (form-encoded)"})
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                return await _json(send, 413, {"error": "request body too large"})
            if not message.get("more_body"):
                break
        secret = parse_qs(body.decode("utf-8", "replace")).get("secret", [""])[0]
        if not secret:
            return await _json(send, 400, {"error": "send secret=... form-encoded"})
        tenant = tenant_for(self.config, secret)
        if tenant is None:
            return await _json(send, 403, {"error": "unknown secret"})
        try:
            credentials = await asyncio.to_thread(self.credentials_for, tenant)
        except ClientError as ex:
            code = ex.response.get("Error", {}).get("Code", "error")
            logger.warning("AssumeRole for tenant %s failed: %s", tenant, code)
            return await _json(send, 502, {"error": f"STS refused AssumeRole ({code})"})
        except BotoCoreError as ex:
            logger.warning("AssumeRole for tenant %s failed: %s", tenant, type(ex).__name__)
            return await _json(send, 502, {"error": f"STS could not be reached ({type(ex).__name__})"})
        await _json(send, 200, credentials)


async def _json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive, send) -> None:
    """Nothing to set up or tear down: acknowledge startup and shutdown."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


def main() -> None:
    parser = argparse.ArgumentParser(description="STS credentials broker for datasette-files-s3")
    parser.add_argument("config", help="JSON config file (see this file's docstring)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8030)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(Broker(load_config(args.config)), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
