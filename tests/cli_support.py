"""What the `datasette files-s3 ...` tests share: running a command as a user
does, writing its configuration, and reading doctor's and cleanup's results.

The commands run through Datasette's own CLI entry point against this run's S3
server over HTTP. Only bucket CORS rules apply there (moto runs with
MOTO_DISABLE_GLOBAL_CORS, see tests/s3_servers.py), so a bucket without a CORS
rule really refuses preflights and `doctor` can fail. The fixtures
(`config_path`, `cli_broker`) are in tests/conftest.py.
"""

from __future__ import annotations

import json

from click.testing import CliRunner
from datasette.cli import cli

from tests.helpers import datasette_config

ORIGIN = "https://datasette.example.com"
SOURCE = "s3files"


def write_config(tmp_path, source_config: dict, name: str = "datasette.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(datasette_config({SOURCE: {"storage": "s3", "config": source_config}})))
    return str(path)


def files_s3(*args, env=None):
    """Run `datasette files-s3 ARGS` as a user would, through Datasette's CLI."""
    return CliRunner().invoke(cli, ["files-s3", *args], env=env, catch_exceptions=False)


def broker_source_config(broker, s3_server, secret: str) -> dict:
    return {
        "credentials_url": broker.url,
        "credentials_url_secret": secret,
        "endpoint_url": s3_server.endpoint_url,
        "region": "us-east-1",
    }


def check_lines(output: str) -> dict[str, str]:
    """{check name: its line, with its fix} from doctor's output."""
    lines, name = {}, None
    for line in output.splitlines():
        stripped = line.strip()
        if stripped[:6] in ("[PASS]", "[WARN]", "[FAIL]"):
            name = stripped[6:].split(": ", 1)[0].strip()
            lines[name] = stripped
        elif stripped.startswith("fix:") and name:
            lines[name] += " " + stripped
    return lines


def bucket_keys(s3_server, bucket_name) -> list[str]:
    """Every key in the bucket, sorted."""
    return sorted(
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket_name).get("Contents", [])
    )


def add_pending(db, file_id, path, expires_at, upload_id=None, source=SOURCE):
    """A row in our pending-uploads table, as prepare would have written it."""
    db.execute(
        "INSERT INTO datasette_files_s3_pending (file_id, source, path, kind, upload_id, filename,"
        " content_type, size, created_at, expires_at) VALUES (?, ?, ?, ?, ?, 'x', 'text/plain', 1, 0, ?)",
        [file_id, source, path, "multipart" if upload_id else "post", upload_id, expires_at],
    )
