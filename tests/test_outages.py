"""S3 and credential outages: a 502/503 naming what failed, nothing half-done,
and the rest of Datasette keeps working."""

import shutil

from tests.helpers import actor_cookies, post_to_bucket, prepare, upload
from tests.live_servers import free_port
from tests.s3_servers import start_s3_server


async def test_unreachable_s3_at_confirm_is_503_and_token_still_works_later(make_datasette, s3_kind):
    """An S3 server of this run's kind as a process we can stop; its state is in
    memory, so the object is uploaded again after the restart on the same port."""
    s3 = start_s3_server(s3_kind)
    try:
        s3.create_bucket("outage-bucket")
        ds = await make_datasette({"s3files": {"storage": "s3", "config": s3.source_config("outage-bucket")}})
        cookies = actor_cookies(ds)
        prepared = (await prepare(ds, cookies, size=3)).json()
        post_to_bucket(prepared, b"abc")
        s3.stop()
        response = await ds.client.post(
            "/-/files/upload/s3files/-/complete",
            json={"upload_token": prepared["upload_token"]},
            cookies=cookies,
        )
        assert response.status_code == 503
        message = response.json()["errors"][0]
        assert "source 's3files'" in message and "cannot reach the S3 endpoint 127.0.0.1" in message
        assert s3.secret_access_key not in response.text
        count = await ds.get_internal_database().execute("select count(*) from datasette_files")
        assert count.single_value() == 0

        s3.start()
        s3.create_bucket("outage-bucket")
        post_to_bucket(prepared, b"abc")
        response = await ds.client.post(
            "/-/files/upload/s3files/-/complete",
            json={"upload_token": prepared["upload_token"]},
            cookies=cookies,
        )
        assert response.status_code == 201
    finally:
        s3.stop()


async def test_prepare_while_s3_is_down_is_503_naming_the_endpoint(make_datasette, s3_kind):
    """Signing a POST needs no S3, but the bucket check before it does."""
    s3 = start_s3_server(s3_kind)
    try:
        s3.create_bucket("down-at-prepare")
        ds = await make_datasette(
            {"s3files": {"storage": "s3", "config": s3.source_config("down-at-prepare")}}
        )
        s3.stop()
        response = await prepare(ds, actor_cookies(ds), size=3)
        assert response.status_code == 503
        body = response.json()
        assert body["errors"] == [
            f"datasette-files source 's3files': cannot reach the S3 endpoint 127.0.0.1:{s3.port} "
            "(list_objects_v2: EndpointConnectionError)"
        ]
        assert body["retryable"] is True
        assert s3.secret_access_key not in response.text
    finally:
        s3.stop()


async def test_delete_during_outage_is_503_and_keeps_the_file(make_datasette, s3_kind):
    s3 = start_s3_server(s3_kind)
    try:
        s3.create_bucket("delete-outage")
        ds = await make_datasette({"s3files": {"storage": "s3", "config": s3.source_config("delete-outage")}})
        cookies = actor_cookies(ds)
        file_id = (await upload(ds, cookies, b"keep me"))["file"]["id"]
        s3.stop()
        response = await ds.client.post(f"/-/files/{file_id}/-/delete", cookies=cookies)
        assert response.status_code == 503
        assert response.json()["ok"] is False
        assert "cannot reach the S3 endpoint" in response.json()["errors"][0]
        assert (await ds.client.get(f"/-/files/{file_id}.json")).status_code == 200
    finally:
        s3.stop()


async def test_other_sources_work_while_one_s3_endpoint_is_down(make_datasette, bucket, tmp_path):
    ds = await make_datasette(
        {
            "down": {
                "storage": "s3",
                "config": bucket.source_config(endpoint_url=f"http://127.0.0.1:{free_port()}"),
            },
            "up": {"storage": "s3", "config": bucket.source_config()},
            "disk": {"storage": "filesystem", "config": {"root": str(tmp_path / "disk")}},
        }
    )
    cookies = actor_cookies(ds)
    response = await prepare(ds, cookies, source="down", size=3)
    assert response.status_code == 503
    assert "cannot reach the S3 endpoint 127.0.0.1" in response.json()["errors"][0]
    await upload(ds, cookies, b"fine", source="up")
    assert (await ds.client.get("/-/files")).status_code == 200
    assert (await ds.client.get("/-/files/source/disk")).status_code == 200
    shutil.rmtree(tmp_path / "disk", ignore_errors=True)
