"""What moto enforces with IAM switched on, and the shipped IAM policies where it does.

The first test is the measurement behind docs/tenants.md ("What the test
stores enforce"): each case is a row of that table, so a moto upgrade that
changes a row fails here, and the table cannot drift from the code.
The others check the JSON policies in docs/examples against moto's IAM,
for the parts moto evaluates (resources and actions on header-signed calls);
tests/test_tenancy_rig.py checks the rest through the scoped proxy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.s3_access import Policy
from tests.tenancy import (
    ACCOUNT,
    EXAMPLES,
    IamMoto,
    aws_client,
    bucket_calls,
    create_user,
    example_policy,
    outcome,
    plugin_calls,
    set_up_tenant_role,
    tenant_policy,
)

# moto itself: its IAM and STS, which LocalStack's S3-only run does not have.
pytestmark = pytest.mark.store("moto", reason="uses moto's IAM and STS")


BUCKET = "shared"
DOC = Path(__file__).resolve().parent.parent / "docs" / "tenants.md"
STS_RIGHTS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:GetFederationToken"], "Resource": "*"}
    ],
}


@dataclass
class Store:
    """The IAM-enforcing moto and the identities the cases use."""

    server: IamMoto
    identities: dict
    role_arn: str
    scoped_role_arn: str
    their_upload_id: str

    def s3(self, identity: str | dict, token: str | None = None):
        """An S3 client for a named IAM user, or for session credentials (dict from STS)."""
        if isinstance(identity, str):
            identity = self.identities[identity]
            return aws_client("s3", self.server.endpoint_url, identity["key"], identity["secret"], token)
        return aws_client(
            "s3", self.server.endpoint_url, identity["AccessKeyId"], identity["SecretAccessKey"], token
        )

    def session(
        self, role_arn: str | None = None, policy: dict | None = None, caller: str = "broker"
    ) -> dict:
        """AssumeRole (as the broker user by default), with an inline session policy if given."""
        identity = self.identities[caller]
        params = {"RoleArn": role_arn or self.role_arn, "RoleSessionName": "team-1"}
        if policy is not None:
            params["Policy"] = json.dumps(policy)
        return self.server.sts(identity["key"], identity["secret"]).assume_role(**params)["Credentials"]

    def presigner(self, identity: str):
        """A client that presigns as the plugin does (SigV4)."""
        keys = self.identities[identity]
        return aws_client(
            "s3", self.server.endpoint_url, keys["key"], keys["secret"], signature_version="s3v4"
        )


@pytest.fixture(scope="module")
def store():
    """An IAM-enforcing moto of its own, with the identities the cases use."""
    server = IamMoto().start()
    admin = aws_client("s3", server.endpoint_url, "admin", "admin")
    admin.create_bucket(Bucket=BUCKET)
    for key in ("team-1/mine.txt", "team-2/theirs.txt", "uploads/mine.txt"):
        admin.put_object(Bucket=BUCKET, Key=key, Body=b"bytes")
    their_upload = admin.create_multipart_upload(Bucket=BUCKET, Key="team-2/upload.bin")["UploadId"]
    iam = server.iam()
    role_arn, broker = set_up_tenant_role(server.endpoint_url, BUCKET)
    trust = example_policy("sts-broker-role-trust.json")
    trust["Statement"][0]["Principal"]["AWS"] = f"arn:aws:iam::{ACCOUNT}:user/role-tester"
    scoped_role = iam.create_role(
        RoleName="role-with-tenant-policy", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName="role-with-tenant-policy",
        PolicyName="tenant",
        PolicyDocument=json.dumps(tenant_policy(BUCKET, "team-1/")),
    )
    identities = {
        "tenant_user": create_user(iam, "tenant-user", tenant_policy(BUCKET, "team-1/")),
        "single_user": create_user(iam, "single-user", example_policy("single-tenant-policy.json", BUCKET)),
        "broker": broker,
        "no_sts": create_user(iam, "no-sts-rights", None),
        "not_trusted": create_user(iam, "not-trusted", example_policy("sts-broker-caller-policy.json")),
        "role_tester": create_user(iam, "role-tester", STS_RIGHTS),
    }
    server.enforce(True)
    yield Store(server, identities, role_arn, scoped_role, their_upload)
    server.stop()


def http_outcome(response: httpx.Response) -> str:
    return "allowed" if response.status_code < 300 else f"HTTP {response.status_code}"


CASES: list[tuple[str, object, str]] = []


def case(row: str, expected: str):
    """Register a measurement: `row` is its line in the docs table, `expected` what moto 5.2 does."""

    def register(run):
        CASES.append((row, run, expected))
        return run

    return register


def tenant(store: Store):
    return store.s3("tenant_user")


@case("IAM user policy: GetObject inside its prefix", "allowed")
def _(store):
    return outcome(lambda: tenant(store).get_object(Bucket=BUCKET, Key="team-1/mine.txt"))


@case("IAM user policy: GetObject outside its prefix", "AccessDenied")
def _(store):
    return outcome(lambda: tenant(store).get_object(Bucket=BUCKET, Key="team-2/theirs.txt"))


@case("IAM user policy: PutObject outside its prefix", "AccessDenied")
def _(store):
    return outcome(lambda: tenant(store).put_object(Bucket=BUCKET, Key="team-2/new.txt", Body=b"x"))


@case("IAM user policy: CreateMultipartUpload outside its prefix", "AccessDenied")
def _(store):
    return outcome(lambda: tenant(store).create_multipart_upload(Bucket=BUCKET, Key="team-2/new.bin"))


@case("IAM user policy: AbortMultipartUpload of another prefix's upload", "AccessDenied")
def _(store):
    s3 = tenant(store)
    return outcome(
        lambda: s3.abort_multipart_upload(
            Bucket=BUCKET, Key="team-2/upload.bin", UploadId=store.their_upload_id
        )
    )


@case("IAM user policy: ListObjectsV2 with a prefix outside the s3:prefix condition", "allowed")
def _(store):
    return outcome(lambda: tenant(store).list_objects_v2(Bucket=BUCKET, Prefix="team-2/"))


@case("IAM user policy: ListObjectsV2 with no prefix", "allowed")
def _(store):
    return outcome(lambda: tenant(store).list_objects_v2(Bucket=BUCKET))


@case("IAM user policy: ListMultipartUploads, not granted", "AccessDenied")
def _(store):
    return outcome(lambda: tenant(store).list_multipart_uploads(Bucket=BUCKET, Prefix="team-1/"))


@case("IAM user policy: GetBucketCors, not granted", "AccessDenied")
def _(store):
    return outcome(lambda: tenant(store).get_bucket_cors(Bucket=BUCKET))


@case("IAM user policy: HeadBucket with s3:ListBucket granted", "403")
def _(store):
    return outcome(lambda: tenant(store).head_bucket(Bucket=BUCKET))


@case("IAM user policy: CopyObject from outside its prefix into it", "allowed")
def _(store):
    source = {"Bucket": BUCKET, "Key": "team-2/theirs.txt"}
    return outcome(lambda: tenant(store).copy_object(Bucket=BUCKET, Key="team-1/copy.txt", CopySource=source))


@case("IAM user policy: DeleteObjects naming a key outside its prefix", "200, per-key AccessDenied")
def _(store):
    answer = tenant(store).delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "team-2/theirs.txt"}]})
    codes = [error["Code"] for error in answer.get("Errors", [])]
    return f"200, per-key {codes[0]}" if codes else "deleted"


@case("Wrong secret key, header-signed", "SignatureDoesNotMatch")
def _(store):
    s3 = aws_client("s3", store.server.endpoint_url, store.identities["tenant_user"]["key"], "wrong")
    return outcome(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="team-1/"))


@case("Unknown access key", "InvalidAccessKeyId")
def _(store):
    s3 = aws_client("s3", store.server.endpoint_url, "AKIAUNKNOWN", "x")
    return outcome(lambda: s3.list_objects_v2(Bucket=BUCKET))


@case("Header-signed call whose Host header a proxy changed", "SignatureDoesNotMatch")
def _(store):
    keys = store.identities["tenant_user"]
    url = f"{store.server.endpoint_url}/{BUCKET}/team-1/mine.txt"
    request = AWSRequest("GET", url)
    S3SigV4Auth(Credentials(keys["key"], keys["secret"]), "s3", "us-east-1").add_auth(request)
    headers = {**dict(request.headers.items()), "Host": "127.0.0.1:1"}
    response = httpx.get(url, headers=headers)
    return "SignatureDoesNotMatch" if b"SignatureDoesNotMatch" in response.content else http_outcome(response)


@case("Presigned GET (SigV4), inside the prefix", "HTTP 500")
def _(store):
    params = {"Bucket": BUCKET, "Key": "team-1/mine.txt"}
    return http_outcome(
        httpx.get(store.presigner("tenant_user").generate_presigned_url("get_object", Params=params))
    )


@case("Presigned PUT (SigV4), inside the prefix", "HTTP 500")
def _(store):
    params = {"Bucket": BUCKET, "Key": "team-1/put.txt"}
    url = store.presigner("tenant_user").generate_presigned_url("put_object", Params=params)
    return http_outcome(httpx.put(url, content=b"x"))


@case("Presigned POST, inside the prefix", "HTTP 500")
def _(store):
    post = store.presigner("tenant_user").generate_presigned_post(BUCKET, "team-1/post.txt")
    return http_outcome(httpx.post(post["url"], data=post["fields"], files={"file": ("f", b"x")}))


@case("AssumeRole by a user with sts:AssumeRole, named in the trust policy", "allowed")
def _(store):
    return outcome(lambda: store.session())


@case("AssumeRole by a user without sts:AssumeRole", "AccessDenied")
def _(store):
    return outcome(lambda: store.session(caller="no_sts"))


@case("AssumeRole by a user with sts:AssumeRole, not in the trust policy", "AccessDenied")
def _(store):
    return outcome(lambda: store.session(caller="not_trusted"))


@case("Session credentials, session policy team-1/: GetObject inside", "allowed")
def _(store):
    credentials = store.session(policy=tenant_policy(BUCKET, "team-1/"))
    s3 = store.s3(credentials, credentials["SessionToken"])
    return outcome(lambda: s3.get_object(Bucket=BUCKET, Key="team-1/mine.txt"))


@case("Session credentials, session policy team-1/: GetObject outside (role allows the bucket)", "allowed")
def _(store):
    credentials = store.session(policy=tenant_policy(BUCKET, "team-1/"))
    s3 = store.s3(credentials, credentials["SessionToken"])
    return outcome(lambda: s3.get_object(Bucket=BUCKET, Key="team-2/theirs.txt"))


@case("Session credentials without their session token", "InvalidAccessKeyId")
def _(store):
    s3 = store.s3(store.session(), token=None)
    return outcome(lambda: s3.get_object(Bucket=BUCKET, Key="team-1/mine.txt"))


@case("Session credentials with a wrong session token", "InvalidToken")
def _(store):
    s3 = store.s3(store.session(), token="wrong")
    return outcome(lambda: s3.get_object(Bucket=BUCKET, Key="team-1/mine.txt"))


@case("Session of a role whose own policy is the tenant policy: GetObject outside", "AccessDenied")
def _(store):
    credentials = store.session(role_arn=store.scoped_role_arn, caller="role_tester")
    s3 = store.s3(credentials, credentials["SessionToken"])
    return outcome(lambda: s3.get_object(Bucket=BUCKET, Key="team-2/theirs.txt"))


@case("GetFederationToken credentials, any S3 call", "InvalidAccessKeyId")
def _(store):
    caller = store.identities["role_tester"]
    policy = json.dumps(tenant_policy(BUCKET, "team-1/"))
    credentials = store.server.sts(caller["key"], caller["secret"]).get_federation_token(
        Name="team-1", Policy=policy
    )["Credentials"]
    s3 = store.s3(credentials, credentials["SessionToken"])
    return outcome(lambda: s3.get_object(Bucket=BUCKET, Key="team-1/mine.txt"))


@pytest.mark.parametrize("row,run,expected", CASES, ids=[row for row, _, _ in CASES])
def test_what_moto_enforces(store, row, run, expected):
    assert run(store) == expected


def test_every_measured_case_is_in_the_docs_table():
    table = DOC.read_text()
    missing = [case for case, _, _ in CASES if f"| {case} |" not in table]
    assert missing == []


def test_example_policies_are_valid_json_that_the_proxy_can_evaluate():
    names = sorted(path.name for path in EXAMPLES.glob("*.json"))
    assert names == [
        "single-tenant-policy.json",
        "sts-broker-caller-policy.json",
        "sts-broker-role-policy.json",
        "sts-broker-role-trust.json",
        "tenant-session-policy.json",
    ]
    for name in names:
        document = json.loads((EXAMPLES / name).read_text())
        assert document["Version"] == "2012-10-17"
        if name != "sts-broker-role-trust.json":  # a trust policy names a Principal: not an S3 policy
            Policy(document)
    trust = example_policy("sts-broker-role-trust.json")
    assert trust["Statement"][0]["Principal"]["AWS"] == f"arn:aws:iam::{ACCOUNT}:user/datasette-files-broker"


def test_single_tenant_policy_allows_every_header_signed_call_the_plugin_makes(store):
    s3 = store.s3("single_user")
    assert set(plugin_calls(s3, BUCKET, "uploads/").values()) == {"allowed"}
    # HeadBucket is left out: moto checks an action named s3:HeadBucket, AWS checks s3:ListBucket
    # (the proxy tests cover it the AWS way).
    calls = bucket_calls(s3, BUCKET)
    assert calls.pop("HeadBucket") == "403"
    assert set(calls.values()) <= {"allowed", "NoSuchCORSConfiguration", "NoSuchLifecycleConfiguration"}


def test_single_tenant_policy_keeps_objects_outside_its_prefix_out_of_reach(store):
    s3 = store.s3("single_user")
    assert outcome(lambda: s3.get_object(Bucket=BUCKET, Key="team-2/theirs.txt")) == "AccessDenied"
    assert outcome(lambda: s3.put_object(Bucket=BUCKET, Key="elsewhere.txt", Body=b"x")) == "AccessDenied"


def test_tenant_policy_as_moto_evaluates_it_allows_the_object_calls_inside_the_prefix(store):
    """moto ignores the s3:prefix condition and session policies, so this checks the
    policy's object statement only, attached to a user; the proxy tests check the rest."""
    s3 = store.s3("tenant_user")
    results = plugin_calls(s3, BUCKET, "team-1/")
    assert results.pop("ListMultipartUploads (prefix)") == "AccessDenied"  # not granted, on purpose
    assert set(results.values()) == {"allowed"}


def test_broker_role_policy_is_a_ceiling_that_allows_the_plugin_calls_anywhere_in_the_bucket(store):
    credentials = store.session()
    s3 = store.s3(credentials, credentials["SessionToken"])
    results = plugin_calls(s3, BUCKET, "team-2/")
    assert results.pop("ListMultipartUploads (prefix)") == "AccessDenied"
    assert set(results.values()) == {"allowed"}
