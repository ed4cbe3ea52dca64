"""Which S3 server a test run talks to, and what each test needs of it.

`pytest --s3=moto` (the default, or DATASETTE_FILES_S3_TEST_SERVER=moto) runs
against moto, which enforces nothing; `pytest --s3=localstack` against
LocalStack's S3, which enforces POST policies, signatures, checksums and CORS
as AWS does; `pytest --s3=ceph` against Ceph RGW, which enforces POST policies
down to their own signature and refuses form fields a policy does not name,
but checks no checksum. A test that needs one kind says so, and is skipped,
with the reason, in a run against another:

    @pytest.mark.store("enforcing")   # the store must refuse what the policy forbids
    @pytest.mark.store("permissive")  # the store must let it through (to test our own checks)
    @pytest.mark.store("checks-checksums")   # a wrong x-amz-checksum-sha256 is refused
    @pytest.mark.store("ignores-checksums")  # it is taken unchecked
    @pytest.mark.store("reports-checksums")  # HEAD shows the SHA-256 (or composite) of what it stored
    @pytest.mark.store("reports-no-checksums")  # HEAD shows none (Ceph)
    @pytest.mark.store("takes-any-key")  # keys made up by a test rig are taken (not Ceph's users)
    @pytest.mark.store("moto", reason="...")  # moto itself (its backend, its quirks)

Unmarked tests run against any. CI runs all three, so every test runs somewhere.
"""

from __future__ import annotations

import os

import pytest

from tests.s3_servers import SERVER_KINDS, ExistingBucket, start_s3_server

REAL_BUCKET = os.environ.get("DATASETTE_FILES_S3_TEST_BUCKET")
STORE_NEEDS = {
    "enforcing": "an S3 store that enforces POST policies",
    "permissive": "an S3 store that accepts what a POST policy forbids",
    "checks-checksums": "an S3 store that checks SHA-256 checksums",
    "ignores-checksums": "an S3 store that takes SHA-256 checksums without checking them",
    "reports-checksums": "an S3 store that reports the SHA-256 of what it stored",
    "reports-no-checksums": "an S3 store that reports no SHA-256 of what it stored",
    "conditional-complete": "an S3 store that honours If-None-Match on CompleteMultipartUpload",
    "takes-any-key": "an S3 store that takes any key id (moto, LocalStack)",
    **{kind: kind for kind in SERVER_KINDS},
}


def pytest_addoption(parser):
    parser.addoption(
        "--s3",
        choices=list(SERVER_KINDS),
        default=os.environ.get("DATASETTE_FILES_S3_TEST_SERVER", "moto"),
        help="the S3 server the tests run against: moto (enforces nothing), localstack (enforces "
        "policies and checksums) or ceph (Ceph RGW: enforces policies, their signatures and fields; "
        "no checksums)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "store(need, reason=None): the test needs an 'enforcing' store, a 'permissive' one, one that "
        "'checks-checksums' or 'ignores-checksums', or a kind itself ('moto', 'localstack', 'ceph')",
    )


def pytest_report_header(config):
    kind = config.getoption("s3")
    bucket = f"; real-bucket mode: {REAL_BUCKET}" if REAL_BUCKET else ""
    server = SERVER_KINDS[kind]
    enforces = "enforces POST policies" if server.enforces_policy else "enforces no POST policy"
    checks = "checks checksums" if server.checks_checksums else "checks no checksum"
    return f"S3 server: {kind} ({enforces}, {checks}){bucket}"


@pytest.fixture(scope="session")
def s3_kind(request) -> str:
    """The kind of S3 server this run talks to: "moto", "localstack" or "ceph"."""
    return request.config.getoption("s3")


@pytest.fixture(scope="session")
def s3_server(s3_kind):
    """This run's S3 server process; on moto only bucket CORS rules apply (no global CORS)."""
    server = start_s3_server(s3_kind)
    yield server
    server.stop()


def existing_bucket(config) -> ExistingBucket:
    """Real-bucket mode's bucket, asked once per run whether it enforces POST policies."""
    if not hasattr(config, "_existing_bucket"):
        store = ExistingBucket(REAL_BUCKET)
        store.enforces_policy = store.probe_policy_enforcement()
        config._existing_bucket = store
    return config._existing_bucket


@pytest.fixture(scope="session")
def bucket_store(request):
    """Where the `bucket` fixture puts its objects: the configured real bucket, or this run's server."""
    if REAL_BUCKET:
        return existing_bucket(request.config)
    return request.getfixturevalue("s3_server")


# Each need on what a store does: the S3Server attribute that says so, and its value.
# An attribute that is None (not known, in real-bucket mode) meets neither value.
NEED_ATTRIBUTES = {
    "enforcing": ("enforces_policy", True),
    "permissive": ("enforces_policy", False),
    "checks-checksums": ("checks_checksums", True),
    "ignores-checksums": ("checks_checksums", False),
    "reports-checksums": ("reports_checksums", True),
    "reports-no-checksums": ("reports_checksums", False),
    "conditional-complete": ("conditional_complete", True),
    "takes-any-key": ("takes_any_key_id", True),
}


def store_matches(need: str, store) -> bool:
    """Whether this store (an S3Server, or its class) meets a `store(...)` marker's need."""
    if need in NEED_ATTRIBUTES:
        attribute, wanted = NEED_ATTRIBUTES[need]
        return getattr(store, attribute) is wanted
    return store.kind == need


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Skip a test marked `store(...)` when this run's store is of the other kind (before any fixture)."""
    marker = item.get_closest_marker("store")
    if marker is None:
        return
    need = marker.args[0]
    if need not in STORE_NEEDS:
        raise pytest.UsageError(f"store({need!r}): use one of {', '.join(STORE_NEEDS)}")
    if REAL_BUCKET and "bucket" in item.fixturenames:
        store = existing_bucket(item.config)
    else:
        store = SERVER_KINDS[item.config.getoption("s3")]
    if not store_matches(need, store):
        why = marker.kwargs.get("reason")
        pytest.skip(
            f"needs {STORE_NEEDS[need]}{f' ({why})' if why else ''}; this run's store is {store.kind}"
        )
