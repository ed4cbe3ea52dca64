"""No `datasette files-s3` command prints a key, a session token or a broker secret."""

from __future__ import annotations

import pytest

from tests.cli_support import (
    ORIGIN,
    SOURCE,
    broker_source_config,
    files_s3,
    write_config,
)


@pytest.mark.store("permissive", reason="signs with made-up keys the store must not check")
def test_no_command_prints_a_secret(tmp_path, s3_server, bucket_name, cli_broker):
    server_keys = [s3_server.secret_access_key, s3_server.access_key_id]
    secrets = {
        "access_key_id": "AKIDLEAKCHECK1111",
        "secret_access_key": "SECRETLEAKCHECK2222",
        "session_token": "TOKENLEAKCHECK3333",
    }
    static = write_config(
        tmp_path,
        s3_server.source_config(bucket_name, **{**secrets, "secret_access_key": {"$env": "LEAK_SECRET"}}),
    )
    env = {"LEAK_SECRET": secrets["secret_access_key"]}
    brokered_secret = "right-broker-secret"
    brokered = write_config(
        tmp_path, broker_source_config(cli_broker, s3_server, brokered_secret), "brokered.json"
    )
    outputs = []
    for path in (static, brokered):
        for args in (
            ["sources"],
            ["sources", "--json"],
            ["cors", SOURCE, "--origin", ORIGIN],
            ["cors", SOURCE, "--origin", ORIGIN, "--dry-run"],
            ["cors", SOURCE, "--origin", ORIGIN, "--apply"],
            ["doctor", "--origin", ORIGIN],
            ["cleanup", "--dry-run"],
            ["cleanup"],
            ["cleanup", "--lifecycle", "--dry-run"],
        ):
            outputs.append(files_s3(*args, "-c", path, env=env).output)
    text = "\n".join(outputs)
    assert "[PASS] presign" in text  # the commands did reach S3 and sign URLs
    for value in [*secrets.values(), brokered_secret, "broker-session-token", *server_keys]:
        assert value not in text
