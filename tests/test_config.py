"""Source configuration: defaults, normalisation, and one-line errors at startup."""

import json

import pytest
from click.testing import CliRunner
from datasette.cli import cli

from datasette_files_s3.config import S3_MAX_OBJECT_SIZE, parse_size, parse_source_config
from datasette_files_s3.errors import ConfigError, StorageUnavailable
from datasette_files_s3.storage import S3Storage
from tests.live_servers import free_port


def test_defaults():
    config = parse_source_config("files", {"bucket": "b"})
    assert config.region == "us-east-1"
    assert config.prefix == ""
    assert config.addressing_style == "auto"
    assert config.max_file_size == S3_MAX_OBJECT_SIZE
    assert config.upload_expires == 900
    assert config.direct_uploads is True
    assert config.credentials_origin == "boto3 default chain (environment, ~/.aws, instance role)"


@pytest.mark.parametrize(
    "options, threshold",
    [
        ({}, 16 * 1024**2),  # checksum: sha256 is the default: parts are hashed while others are sent
        ({"checksum": "sha256"}, 16 * 1024**2),
        ({"checksum": "none"}, 64 * 1024**2),
        ({"checksum": "sha256", "multipart_threshold": "64MiB"}, 64 * 1024**2),
        ({"checksum": "none", "multipart_threshold": "8MiB"}, 8 * 1024**2),
    ],
)
def test_multipart_threshold_default_depends_on_checksum(options, threshold):
    assert parse_source_config("f", {"bucket": "b", **options}).multipart_threshold == threshold


@pytest.mark.parametrize("prefix", ["uploads", "uploads/", "/uploads", "/uploads/"])
def test_prefix_forms_are_equivalent(prefix):
    assert parse_source_config("f", {"bucket": "b", "prefix": prefix}).prefix == "uploads/"


@pytest.mark.parametrize(
    "options",
    [
        {"endpoint_url": "http://127.0.0.1:9000", "region": "eu-west-1"},
        {"endpoint_url": "http://[::1]:9000", "public_endpoint_url": "https://s3.example.com/"},
        {"endpoint_url": "http://localhost:4566", "bucket": "My_Bucket.v2"},
        {"bucket": "arn:aws:s3:eu-west-1:123456789012:accesspoint/uploads"},
        {"region": "", "endpoint_url": ""},  # empty: unset
    ],
)
def test_values_botocore_takes_are_accepted(options):
    parse_source_config("f", {"bucket": "b", **options})


def test_endpoint_url_defaults_to_path_style():
    config = parse_source_config("f", {"bucket": "b", "endpoint_url": "http://127.0.0.1:9000"})
    assert config.addressing_style == "path"


@pytest.mark.parametrize(
    "value, expected",
    [(1024, 1024), ("100MiB", 100 * 1024**2), ("5 GB", 5 * 1000**3), ("2048", 2048), ("1.5KiB", 1536)],
)
def test_sizes_accept_units(value, expected):
    assert parse_size(value, "max_file_size") == expected


@pytest.mark.parametrize(
    "raw, option, fragment",
    [
        ({}, "bucket", "is required"),
        ({"credentials_url": "https://broker.example"}, "credentials_url_secret", "is required"),
        ({"bucket": "b", "buckett": "x"}, "buckett", "is not a known option"),
        ({"bucket": "b", "prefix": "a/../b"}, "prefix", "'..'"),
        ({"bucket": "b", "prefix": ".."}, "prefix", "'..'"),
        ({"bucket": "b", "access_key_id": "AKIA"}, "secret_access_key", "together"),
        ({"bucket": "b", "endpoint_url": "localhost:9000"}, "endpoint_url", "http://"),
        ({"bucket": "b", "max_file_size": "lots"}, "max_file_size", "size in bytes"),
        ({"bucket": "b", "max_file_size": -5}, "max_file_size", "greater than zero"),
        ({"bucket": "b", "upload_expires": "soon"}, "upload_expires", "whole number"),
        ({"bucket": "b", "allowed_content_types": ["images"]}, "allowed_content_types", "not like"),
        ({"bucket": "b", "addressing_style": "sideways"}, "addressing_style", "one of"),
        ({"bucket": "b", "direct_uploads": "maybe"}, "direct_uploads", "true or false"),
        ({"bucket": "b", "upload_method": "PATCH"}, "upload_method", "auto"),
        # What once escaped as a traceback instead of this one line:
        ({"bucket": "b", "thumbnail_max_size": "9" * 400}, "thumbnail_max_size", "size in bytes"),
        ({"bucket": "b", "max_read_size": "1" * 309 + " GiB"}, "max_read_size", "size in bytes"),
        ({"bucket": "b", "upload_expires": float("inf")}, "upload_expires", "whole number"),
        ({"bucket": "b", "download_expires": True}, "download_expires", "whole number"),
        ({"bucket": "b", 1: "x", "zz": 2}, "1", "is not a known option"),
        # Values botocore refuses when it makes the client: every request was a 500.
        ({"bucket": "b", "region": "us east 1"}, "region", "region name"),
        ({"bucket": "b", "endpoint_url": "http://s3 store:9000"}, "endpoint_url", "http://"),
        ({"bucket": "b", "endpoint_url": "http://s3_store:9000"}, "endpoint_url", "valid host"),
        ({"bucket": "b", "public_endpoint_url": "http://x:y@s3 store"}, "public_endpoint_url", "http://"),
        (
            {"bucket": "b", "credentials_url": "https://broker:api/", "credentials_url_secret": "s"},
            "credentials_url",
            "port",
        ),
        ({"bucket": "my bucket!"}, "bucket", "bucket name"),
    ],
)
def test_config_errors_name_source_and_option(raw, option, fragment):
    with pytest.raises(ConfigError) as info:
        parse_source_config("my-files", raw)
    message = str(info.value)
    assert "'my-files'" in message
    assert f"option '{option}'" in message
    assert fragment in message
    assert "\n" not in message


def test_config_error_never_echoes_secret_values():
    with pytest.raises(ConfigError) as info:
        parse_source_config("f", {"bucket": "b", "access_key_id": "AKIASECRETVALUE123"})
    assert "AKIASECRETVALUE123" not in str(info.value)


def test_repr_hides_secrets():
    config = parse_source_config(
        "f", {"bucket": "b", "access_key_id": "AKIAVISIBLE", "secret_access_key": "s3cr3t-value"}
    )
    assert "s3cr3t-value" not in repr(config) and "AKIAVISIBLE" not in repr(config)


def test_serve_fails_with_one_line_naming_source_and_option(tmp_path):
    config = {
        "plugins": {
            "datasette-files": {
                "sources": {"broken-source": {"storage": "s3", "config": {"region": "eu-west-1"}}}
            }
        }
    }
    path = tmp_path / "datasette.json"
    path.write_text(json.dumps(config))
    result = CliRunner().invoke(cli, ["serve", "--memory", "-c", str(path), "--get", "/"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: datasette-files source 'broken-source' (storage: s3): option 'bucket' is required "
        "(or set credentials_url to use a credentials broker)"
    ]


def test_dash_s_form_configures_a_source(tmp_path, bucket):
    """`-s plugins.datasette-files.sources.NAME.config.bucket B` works like YAML."""
    args = ["serve", "--memory", "--get", "/-/files/sources.json"]
    args += ["-s", "plugins.datasette-files.sources.from-cli.storage", "s3"]
    for key, value in bucket.source_config().items():
        args += ["-s", f"plugins.datasette-files.sources.from-cli.config.{key}", value]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    # datasette-files keeps sources in a module-level dict, so sources of other
    # tests in this process are listed too: pick ours.
    sources = [s for s in json.loads(result.output)["sources"] if s["slug"] == "from-cli"]
    assert sources == [
        {
            "slug": "from-cli",
            "storage_type": "s3",
            "capabilities": {
                "can_upload": True,
                "can_delete": True,
                "can_list": True,
                "can_generate_signed_urls": True,
                "requires_proxy_download": False,
            },
        }
    ]


@pytest.mark.parametrize(
    "option, url",
    [
        ("endpoint_url", "http://user:hunter2@127.0.0.1:{port}"),
        ("credentials_url", "http://user:hunter2@127.0.0.1:{port}/credentials"),
    ],
)
async def test_user_info_in_a_url_never_reaches_an_error(option, url):
    """A URL's user info is a password: the unreachable endpoint or broker is
    named by host and port alone (netloc would have carried the password)."""
    raw = {"bucket": "b", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "hush"}
    if option == "credentials_url":
        raw = {"bucket": "b", "credentials_url_secret": "broker-secret"}
    storage = S3Storage()
    await storage.configure({**raw, option: url.format(port=free_port())})
    with pytest.raises(StorageUnavailable) as info:
        await storage.get_file_metadata("x")
    assert "127.0.0.1:" in str(info.value)
    assert "hunter2" not in str(info.value) and "user" not in str(info.value)
    assert "hunter2" not in storage.config.credentials_origin
