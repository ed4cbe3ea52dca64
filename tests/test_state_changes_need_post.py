"""State changes only on POST: a GET or HEAD of a delete or update URL, the
requests any other web page can make a browser send with the login cookie
(SameSite=Lax lets a top-level navigation carry it), gets 405 and changes nothing."""

import pytest

from tests.helpers import actor_cookies, upload


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("action", ["delete", "update"])
async def test_get_or_head_of_a_state_change_is_refused_and_changes_nothing(ds, bucket, method, action):
    cookies = actor_cookies(ds)
    file = (await upload(ds, cookies, b"keep me", filename="kept.txt"))["file"]
    response = await ds.client.request(method, f"/-/files/{file['id']}/-/{action}", cookies=cookies)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    if method == "GET":
        assert response.json()["ok"] is False
    assert any(key.endswith("/kept.txt") for key in bucket.keys(bucket.prefix))
    still_there = (await ds.client.get(f"/-/files/{file['id']}.json")).json()
    assert still_there["id"] == file["id"]
    assert still_there.get("search_text") in (None, "")


async def test_post_still_deletes(ds, bucket):
    cookies = actor_cookies(ds)
    file = (await upload(ds, cookies, b"gone", filename="gone.txt"))["file"]
    assert (await ds.client.post(f"/-/files/{file['id']}/-/delete", cookies=cookies)).status_code == 200
    assert not bucket.keys(bucket.prefix)
