"""`datasette files-s3 doctor`: each check passes on a good bucket and fails, with its fix, on a bad one."""

from __future__ import annotations

import uuid

import pytest

from datasette_files_s3 import doctor
from tests.cli_support import (
    ORIGIN,
    SOURCE,
    broker_source_config,
    check_lines,
    files_s3,
    write_config,
)
from tests.fault_injection import FlakyS3Proxy
from tests.live_servers import free_port


def test_doctor_passes_on_a_correct_bucket(s3_server, bucket_name, config_path):
    files_s3("cors", SOURCE, "-c", config_path, "--origin", ORIGIN, "--apply")
    files_s3("cleanup", SOURCE, "-c", config_path, "--lifecycle")
    result = files_s3("doctor", SOURCE, "-c", config_path, "--origin", ORIGIN)
    assert result.exit_code == 0, result.output
    lines = check_lines(result.output)
    for name in ("credentials", "bucket", "clock", "write", "read", "range read", "presign", "delete"):
        assert lines[name].startswith("[PASS]"), result.output
    assert lines[f"cors {ORIGIN}"].startswith("[PASS]")
    assert lines["lifecycle"].startswith("[PASS]")
    assert s3_server.client().list_objects_v2(Bucket=bucket_name).get("KeyCount") == 0  # probe removed


def test_doctor_fails_on_a_bucket_without_cors(config_path):
    result = files_s3("doctor", SOURCE, "-c", config_path, "--origin", ORIGIN)
    assert result.exit_code == 1
    assert check_lines(result.output)[f"cors {ORIGIN}"].startswith(f"[FAIL] cors {ORIGIN}: preflight refused")
    assert (
        f"fix: datasette files-s3 cors {SOURCE} -c {config_path} --origin {ORIGIN} --apply" in result.output
    )


def test_doctor_fails_when_etag_is_not_exposed(tmp_path, s3_server):
    name = f"cli-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(name, cors_origins=[ORIGIN], expose_etag=False)
    path = write_config(tmp_path, s3_server.source_config(name))
    result = files_s3("doctor", SOURCE, "-c", path, "--origin", ORIGIN)
    assert result.exit_code == 1
    assert "ETag is not exposed" in check_lines(result.output)[f"cors {ORIGIN}"]


@pytest.mark.parametrize(
    "bucket_fault, message, fix",
    [
        ("missing bucket", "does not exist", "fix: create the bucket, or fix the source's bucket option"),
        ("unreachable endpoint", "cannot reach the S3 endpoint", "fix: check endpoint_url"),
    ],
)
def test_doctor_fails_on_a_bucket_fault(tmp_path, s3_server, bucket_name, bucket_fault, message, fix):
    if bucket_fault == "missing bucket":
        config = s3_server.source_config("no-such-bucket-here")
    else:
        config = s3_server.source_config(bucket_name, endpoint_url=f"http://127.0.0.1:{free_port()}")
    result = files_s3("doctor", SOURCE, "-c", write_config(tmp_path, config), "--origin", ORIGIN)
    assert result.exit_code == 1
    assert message in check_lines(result.output)["bucket"]
    assert fix in result.output


def test_doctor_stops_after_a_failed_bucket_check(tmp_path, s3_server):
    """The README's promise: nothing after a failed bucket check runs, not even the clock."""
    path = write_config(tmp_path, s3_server.source_config("no-such-bucket-here"))
    result = files_s3("doctor", SOURCE, "-c", path, "--origin", ORIGIN)
    assert result.exit_code == 1
    assert list(check_lines(result.output)) == ["credentials", "bucket"]


@pytest.mark.store("permissive", reason="the POSTs that break the policy must get through")
def test_doctor_warns_when_the_store_does_not_enforce_the_post_policy(s3_server, bucket_name, config_path):
    result = files_s3("doctor", SOURCE, "-c", config_path)
    assert result.exit_code == 0, result.output  # a warning, not a failure
    line = check_lines(result.output)["policy"]
    assert line.startswith(
        "[WARN] policy: the store accepted a POST one byte over the signed size and one to a key "
        "it was not signed for: it does not enforce POST policies"
    )
    assert (
        "any user with upload permission can write any size, and overwrite other keys in the bucket "
        "until confirm catches it, or forever for keys we never confirm" in line
    )
    assert "fix: use a store that enforces POST policies" in result.output
    assert s3_server.client().list_objects_v2(Bucket=bucket_name).get("KeyCount") == 0  # probes removed


@pytest.mark.store("enforcing")
def test_doctor_says_when_the_store_enforces_the_post_policy(s3_server, bucket_name, config_path):
    result = files_s3("doctor", SOURCE, "-c", config_path)
    assert check_lines(result.output)["policy"] == (
        "[PASS] policy: the store refused a POST one byte over the signed size (HTTP 400 EntityTooLarge) "
        "and one to a key it was not signed for (HTTP 403 AccessDenied)"
    )
    assert s3_server.client().list_objects_v2(Bucket=bucket_name).get("KeyCount") == 0


def test_doctor_reports_whether_the_store_keeps_unnamed_post_fields(
    s3_server, bucket_name, config_path, s3_kind
):
    """moto and LocalStack keep form fields a POST policy does not name (measured:
    tests/test_unsigned_fields.py); AWS S3 and Ceph RGW refuse the form."""
    result = files_s3("doctor", SOURCE, "-c", config_path)
    line = check_lines(result.output)["fields"]
    if s3_kind in ("moto", "localstack"):
        assert line.startswith(
            "[WARN] fields: the store accepted a POST with a form field its policy does not name"
        )
        assert "fix: use a store that refuses unnamed POST fields" in result.output
    else:
        assert line.startswith("[PASS] fields: the store refused a POST with a form field")
    assert s3_server.client().list_objects_v2(Bucket=bucket_name).get("KeyCount") == 0  # probe removed


def test_doctor_fails_on_bad_credentials(tmp_path, s3_server, cli_broker):
    path = write_config(tmp_path, broker_source_config(cli_broker, s3_server, "wrong-broker-secret"))
    result = files_s3("doctor", SOURCE, "-c", path, "--origin", ORIGIN)
    assert result.exit_code == 1
    assert "answered HTTP 403" in check_lines(result.output)["credentials"]
    assert "fix: check credentials_url and credentials_url_secret" in result.output


def test_doctor_says_when_broker_credentials_expire(tmp_path, s3_server, cli_broker):
    path = write_config(tmp_path, broker_source_config(cli_broker, s3_server, "right-broker-secret"))
    result = files_s3("doctor", SOURCE, "-c", path)
    line = check_lines(result.output)["credentials"]
    assert line.startswith("[PASS]") and "expire in 60 min" in line


def test_clock_skew_over_a_minute_fails():
    check = doctor.judge_clock("Tue, 24 Nov 2026 03:00:00 GMT", now=1795489200 + 120)
    assert check.status == doctor.FAIL and "120s ahead" in check.message


def test_doctor_says_the_store_takes_post_and_honours_if_none_match(s3_server, bucket_name, config_path):
    result = files_s3("doctor", SOURCE, "-c", config_path)
    lines = check_lines(result.output)
    assert (
        lines["post"]
        == "[PASS] post: the store takes POST Object; upload_method auto: single files go by POST"
    )
    assert lines["conditional"].startswith("[PASS] conditional: the store honours If-None-Match: *")
    assert s3_server.client().list_objects_v2(Bucket=bucket_name).get("KeyCount") == 0  # probes removed


@pytest.mark.parametrize("setting, status", [("auto", "PASS"), ("put", "PASS"), ("post", "FAIL")])
def test_doctor_on_a_store_that_refuses_post_object(tmp_path, s3_server, bucket_name, setting, status):
    """No test store refuses POST Object as R2 and B2 do (501), a fault we cannot produce
    otherwise: a proxy answers 501 to every form POST and passes the rest."""
    proxy = FlakyS3Proxy(s3_server.port, refuse_form_posts=True).start()
    try:
        config = s3_server.source_config(bucket_name, endpoint_url=proxy.url, upload_method=setting)
        result = files_s3("doctor", SOURCE, "-c", write_config(tmp_path, config))
    finally:
        proxy.stop()
    line = check_lines(result.output)["post"]
    assert line.startswith(f"[{status}] post: the store refuses POST Object (501)"), result.output
    if setting == "post":
        assert result.exit_code == 1
        assert "fix: set upload_method: auto (or put) for this source" in result.output
    else:
        assert "single files go by PUT" in line
