"""With `public_endpoint_url`, what a browser may read names the store by its
public host, never the internal one Datasette uses (a Docker or VPC name);
the log keeps the internal host for the operator."""

import logging

import pytest

from tests.helpers import actor_cookies, prepare
from tests.live_servers import free_port

INTERNAL = "127.0.0.1:{port}"
PUBLIC = "https://s3.example.com"


@pytest.fixture
async def unreachable(make_datasette, bucket):
    port = free_port()  # nothing listens there: the internal endpoint is down
    config = bucket.source_config(endpoint_url=f"http://127.0.0.1:{port}", public_endpoint_url=PUBLIC)
    return await make_datasette({"s3files": {"storage": "s3", "config": config}}), port


@pytest.mark.parametrize("endpoint", ["bucket", "prepare"])
async def test_error_bodies_name_the_public_host_only(unreachable, endpoint, caplog):
    ds, port = unreachable
    cookies = actor_cookies(ds)
    with caplog.at_level(logging.WARNING, logger="datasette_files_s3"):
        if endpoint == "bucket":
            response = await ds.client.post("/-/files-s3/upload/s3files/-/bucket", json={}, cookies=cookies)
        else:
            response = await prepare(ds, cookies, size=3)
    assert response.status_code == 503, response.text
    assert "s3.example.com" in response.text
    assert INTERNAL.format(port=port) not in response.text
    assert str(port) not in response.text
    assert INTERNAL.format(port=port) in caplog.text
