"""Pure multipart logic: part planning at S3's edges, sign-request checks, completion checks."""

import pytest

from datasette_files_s3 import multipart, tickets
from datasette_files_s3.config import S3_MAX_OBJECT_SIZE
from datasette_files_s3.errors import UploadRejected
from datasette_files_s3.multipart import MIB, PartPlan, completion_problems, plan_parts


def test_plan_for_zero_bytes_is_one_empty_part():
    plan = plan_parts(0)
    assert (plan.part_count, plan.part_length(1)) == (1, 0)


def test_plan_for_exactly_five_mib_is_one_full_part():
    plan = plan_parts(5 * MIB, preferred=5 * MIB)
    assert (plan.part_size, plan.part_count, plan.part_length(1)) == (5 * MIB, 1, 5 * MIB)


def test_plan_one_byte_over_five_mib_adds_a_one_byte_part():
    plan = plan_parts(5 * MIB + 1, preferred=5 * MIB)
    assert plan.part_count == 2
    assert plan.part_length(2) == 1


def test_plan_for_five_tib_fits_in_ten_thousand_parts():
    plan = plan_parts(S3_MAX_OBJECT_SIZE)
    assert plan.part_count <= multipart.MAX_PARTS
    assert plan.part_size % MIB == 0
    assert plan.part_size * plan.part_count >= S3_MAX_OBJECT_SIZE
    assert plan.part_length(plan.part_count) > 0


def test_plan_never_goes_below_s3_minimum_part_size():
    assert plan_parts(100 * MIB, preferred=1).part_size == multipart.MIN_PART_SIZE


@pytest.mark.parametrize("size", [-1, S3_MAX_OBJECT_SIZE + 1])
def test_plan_rejects_sizes_s3_cannot_hold(size):
    with pytest.raises(ValueError):
        plan_parts(size)


@pytest.mark.parametrize("size", [1, 5 * MIB - 1, 64 * MIB + 7, 10**12, S3_MAX_OBJECT_SIZE - 1])
def test_part_lengths_add_up_to_the_file(size):
    plan = plan_parts(size)
    total = plan.part_size * (plan.part_count - 1) + plan.part_length(plan.part_count)
    assert total == size
    assert 0 < plan.part_length(plan.part_count) <= plan.part_size


@pytest.mark.parametrize(
    "threshold, expected",
    [(1, 5 * MIB), (5 * MIB, 5 * MIB), (12 * MIB, 12 * MIB), (64 * MIB, multipart.DEFAULT_PART_SIZE)],
)
def test_preferred_part_size_follows_threshold_within_limits(threshold, expected):
    assert multipart.preferred_part_size(threshold) == expected


PLAN = PartPlan(size=12 * MIB, part_size=5 * MIB, part_count=3)


def s3_part(number, size):
    return {"PartNumber": number, "Size": size, "ETag": f'"etag{number}"'}


def test_completion_accepts_exactly_the_plan():
    assert completion_problems(PLAN, [s3_part(1, 5 * MIB), s3_part(3, 2 * MIB), s3_part(2, 5 * MIB)]) == []


def test_completion_reports_missing_part():
    problems = completion_problems(PLAN, [s3_part(1, 5 * MIB), s3_part(3, 2 * MIB)])
    assert problems == ["1 of 3 parts have not been uploaded: 2"]


def test_completion_reports_wrong_part_size():
    problems = completion_problems(PLAN, [s3_part(1, 5 * MIB), s3_part(2, 5 * MIB), s3_part(3, 2 * MIB + 1)])
    assert problems == [f"Part 3 is {2 * MIB + 1} bytes but should be {2 * MIB}"]


def test_completion_reports_part_the_plan_never_had():
    parts = [s3_part(1, 5 * MIB), s3_part(2, 5 * MIB), s3_part(3, 2 * MIB), s3_part(4, 10)]
    assert completion_problems(PLAN, parts) == ["Part 4 was uploaded but the plan has only 3 parts"]


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "part_numbers is required"),
        ([], "part_numbers is required"),
        ([0], "Part 0 is not in this upload's plan"),
        ([4], "Part 4 is not in this upload's plan"),
        (["1"], "must be whole numbers"),
        ([True], "must be whole numbers"),
        (list(range(1, 102)), "at most 100"),
    ],
)
def test_sign_request_part_numbers_are_checked(value, message):
    with pytest.raises(UploadRejected, match=message):
        multipart.parse_part_numbers(value, PLAN)


def test_sign_request_duplicates_are_folded():
    assert multipart.parse_part_numbers([2, 1, 2], PLAN) == [2, 1]


def ticket(**changes):
    fields = dict(
        source="s3files",
        file_id="df-x",
        path="x/big.bin",
        filename="big.bin",
        content_type="application/octet-stream",
        size=12 * MIB,
        actor_id="alice",
        expires_at=1000.0,
        kind="multipart",
        upload_id="upload-1",
        part_size=5 * MIB,
    )
    fields.update(changes)
    return tickets.UploadTicket(**fields)


REQUEST = tickets.UploadRequest(filename="big.bin", content_type="application/octet-stream", size=12 * MIB)


def test_ticket_plan_is_the_signed_part_size():
    assert multipart.plan_for(ticket()) == PLAN


def test_single_request_token_is_not_a_multipart_token():
    with pytest.raises(UploadRejected, match="single-request upload"):
        multipart.check_multipart_ticket(ticket(kind="post", upload_id=None, part_size=None), "s3files")


def test_parts_cannot_be_signed_after_expiry():
    multipart.check_still_open(ticket(), now=999.0)
    with pytest.raises(UploadRejected, match="expired"):
        multipart.check_still_open(ticket(), now=1001.0)


def test_resume_matches_same_file_only():
    assert multipart.resume_matches(ticket(), REQUEST, now=10.0)


@pytest.mark.parametrize(
    "changes, now",
    [
        ({"filename": "other.bin"}, 10.0),
        ({"size": 12 * MIB + 1}, 10.0),
        ({"content_type": "video/mp4"}, 10.0),
        ({"kind": "post"}, 10.0),
        ({}, 1001.0),
    ],
)
def test_resume_refuses_a_different_file_or_expired_upload(changes, now):
    assert not multipart.resume_matches(ticket(**changes), REQUEST, now=now)
