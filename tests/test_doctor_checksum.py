"""doctor's checksum check: does the store take, and check, a SHA-256 on a POST and a part?"""

import pytest

from datasette_files_s3 import doctor, files_bridge


@pytest.mark.parametrize(
    "post, part, setting, status, words",
    [
        ([True, False], [True, False], "sha256", doctor.PASS, "checks SHA-256 on POSTs and parts"),
        ([True, False], [True, False], "none", doctor.WARN, "checks SHA-256"),
        ([False, False], [True, False], "sha256", doctor.FAIL, "refuses a SHA-256 checksum on a POST"),
        ([True, True], [False, False], "sha256", doctor.FAIL, "refuses a SHA-256 checksum on a part"),
        ([False, False], [False, False], "none", doctor.PASS, "checksum: none is right"),
        ([True, True], [True, True], "sha256", doctor.WARN, "on a POST and part but does not check it"),
        ([True, False], [True, True], "sha256", doctor.WARN, "on a part but does not check it"),
    ],
)
def test_judge_checksums_says_which_setting_fits(post, part, setting, status, words):
    check = doctor.judge_checksums(post, part, setting)
    assert (check.status, check.name) == (status, "checksum")
    assert words in check.message
    if status == doctor.FAIL:
        assert check.fix == "set checksum: none for this source"


@pytest.mark.store("ignores-checksums", reason="the store must take a wrong SHA-256 without checking it")
async def test_doctor_finds_a_store_that_takes_checksums_without_checking_them(make_datasette, bucket):
    # moto and Ceph RGW store or drop x-amz-checksum-* and verify none
    # (S3-TEST-SERVER.md): the probes with a wrong SHA-256 are accepted, so a
    # checksum: sha256 source there is diagnosed, never reported as checked.
    await make_datasette({"s3files": {"storage": "s3", "config": bucket.source_config()}})
    checks = await doctor.run_checks(files_bridge.storage_for("s3files"), origins=[])
    [check] = [c for c in checks if c.name == "checksum"]
    assert check.status == doctor.WARN
    assert "on a POST and part but does not check it" in check.message
    assert bucket.keys(bucket.prefix) == []  # every probe removed
    assert bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", []) == []
