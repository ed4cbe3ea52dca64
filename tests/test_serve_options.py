"""The config file of a `datasette serve` command line, for the commands we show
users (datasette_files_s3/serve_options.py); the e2e CORS test runs one as shown."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from datasette_files_s3.serve_options import config_file_from_argv, config_option


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["datasette", "serve", "-c", "datasette.yaml", "-p", "8001"], "datasette.yaml"),
        (["datasette", "serve", "--config", "conf/d.json"], "conf/d.json"),
        (["datasette", "serve", "--config=d.yml"], "d.yml"),
        (["datasette", "serve", "-cd.yaml"], "d.yaml"),
        (["datasette", "serve", "--memory", "--cors"], None),
        (["pytest", "-c", "pytest.ini"], None),  # not a datasette serve: its -c is pytest's
    ],
)
def test_config_file_from_argv(argv, expected):
    assert config_file_from_argv(argv) == expected


def test_config_option_quotes_the_path():
    datasette = SimpleNamespace(config_dir=None)
    assert config_option(datasette, ["datasette", "serve", "-c", "my conf.yaml"]) == " -c 'my conf.yaml'"


def test_config_option_of_a_config_directory(tmp_path: Path):
    (tmp_path / "datasette.yaml").write_text("{}")
    datasette = SimpleNamespace(config_dir=tmp_path)
    assert config_option(datasette, ["datasette", "serve", str(tmp_path)]) == f" -c {tmp_path}/datasette.yaml"
