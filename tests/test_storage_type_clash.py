"""A second plugin registering storage type `s3` stops Datasette at startup.

datasette-files keeps the last class registered for a type, silently; with the
published datasette-files-s3 0.1a2 installed beside us that would be a coin
toss. The stand-in here registers `s3` through the same hook, as 0.1a2 does.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from datasette import hookimpl
from datasette.plugins import pm
from datasette.utils import StartupError
from datasette_files.base import Storage

ROOT = Path(__file__).resolve().parent.parent


class OtherS3(Storage):
    storage_type = "s3"


class OtherS3Plugin:
    @hookimpl
    def register_files_storage_types(self, datasette):
        return [OtherS3]


async def test_a_second_s3_backend_stops_startup_naming_both(make_datasette):
    pm.register(OtherS3Plugin(), name="other-s3")
    try:
        with pytest.raises(StartupError) as raised:
            await make_datasette({})
    finally:
        pm.unregister(name="other-s3")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("datasette-files-s3")
    assert "other-s3" in message
    assert "storage type 's3'" in message
    assert "uninstall other-s3" in message


async def test_other_storage_types_from_other_plugins_are_fine(make_datasette):
    class Elsewhere(Storage):
        storage_type = "elsewhere"

    class ElsewherePlugin:
        @hookimpl
        def register_files_storage_types(self, datasette):
            return [Elsewhere]

    pm.register(ElsewherePlugin(), name="elsewhere")
    try:
        await make_datasette({})
    finally:
        pm.unregister(name="elsewhere")


def test_datasette_serve_stops_with_one_line():
    """The CLI turns the refusal into one `Error:` line and exit status 1."""
    script = (
        "from datasette.cli import cli\n"
        "from datasette.plugins import pm\n"
        "from tests.test_storage_type_clash import OtherS3Plugin\n"
        "pm.register(OtherS3Plugin(), name='other-s3')\n"
        "cli(['serve', '--memory', '--get', '/'])\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert finished.returncode == 1
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert lines[0].startswith("Error: datasette-files-s3")
    assert "other-s3" in lines[0]
