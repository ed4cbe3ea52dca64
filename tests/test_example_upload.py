"""docs/examples/upload.py, run as a user runs it, against a live Datasette and this run's S3 server."""

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.live_servers import DatasetteProcess, live_config

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "upload.py"


def test_example_script_uploads_with_a_checked_sha256(s3_server, tmp_path):
    from datasette.app import Datasette

    bucket = f"example-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    server = DatasetteProcess(live_config(s3_server.source_config(bucket))).start()
    try:
        token = asyncio.run(Datasette(memory=True, secret=server.secret).create_token("alice"))
        content = os.urandom(200_000)
        path = tmp_path / "report.bin"
        path.write_bytes(content)
        run = subprocess.run(
            [sys.executable, str(EXAMPLE), server.url, "s3files", str(path), "--token", token],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        file_id, content_hash, url = run.stdout.split()
        assert content_hash == "sha256:" + hashlib.sha256(content).hexdigest()
        assert url == f"/-/files/{file_id}"
        (key,) = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
        assert s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read() == content
    finally:
        server.stop()
