"""The config file this Datasette was started with, for the commands we show
users (the uploader's CORS fix): `datasette files-s3 ...` reads the sources from
the same file, so a command without it finds no source and fails.

Datasette keeps the parsed config but not its path, so the path is read from
the `datasette serve` command line, as the user typed it (relative to where
they started the server, which is where they will paste the command).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

CONFIG_NAMES = ("datasette.yaml", "datasette.yml", "datasette.json")


def config_file_from_argv(argv: list[str]) -> str | None:
    """The last `-c`/`--config` value of a `datasette serve` command line, or None
    (also for any other command line, such as pytest's, whose `-c` is its own)."""
    if "serve" not in argv:
        return None
    argv = argv[argv.index("serve") + 1 :]
    found = None
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith("--config="):
            found = arg.removeprefix("--config=")
        elif arg.startswith("-c") and len(arg) > 2 and not arg.startswith("--"):
            found = arg[2:]
    return found


def config_option(datasette, argv: list[str] | None = None) -> str:
    """` -c FILE` naming this server's config file, or "" when it was started without one."""
    path = config_file_from_argv(sys.argv if argv is None else argv)
    if path is None and datasette.config_dir is not None:
        # `datasette serve DIR/`: the config is a file of the directory.
        files = [Path(datasette.config_dir) / name for name in CONFIG_NAMES]
        path = next((str(file) for file in files if file.exists()), None)
    return f" -c {shlex.quote(path)}" if path else ""


def cors_command(datasette, source: str) -> str:
    """`datasette files-s3 cors SOURCE -c FILE`: the fix the uploader shows, without its `--origin`."""
    return f"datasette files-s3 cors {shlex.quote(source)}{config_option(datasette)}"
