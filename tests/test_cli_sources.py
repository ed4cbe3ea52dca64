"""`datasette files-s3 sources`: what it lists, read as `datasette serve` reads configuration."""

from __future__ import annotations

import json

from tests.cli_support import (
    SOURCE,
    files_s3,
    write_config,
)


def test_sources_lists_bucket_prefix_endpoint_and_credentials(config_path, bucket_name, s3_server):
    result = files_s3("sources", "-c", config_path)
    assert result.exit_code == 0, result.output
    assert bucket_name in result.output
    assert "uploads/" in result.output
    assert s3_server.endpoint_url in result.output
    assert "config keys" in result.output


def test_sources_reads_settings_and_env_like_serve(tmp_path, s3_server, bucket_name):
    config = s3_server.source_config({"$env": "CLI_TEST_BUCKET"})
    path = write_config(tmp_path, config)
    result = files_s3(
        "sources",
        "--json",
        "-c",
        path,
        "-s",
        f"plugins.datasette-files.sources.{SOURCE}.config.prefix",
        "from-setting",
        env={"CLI_TEST_BUCKET": "bucket-from-env"},
    )
    assert result.exit_code == 0, result.output
    [summary] = json.loads(result.output)
    assert (summary["bucket"], summary["prefix"]) == ("bucket-from-env", "from-setting/")
