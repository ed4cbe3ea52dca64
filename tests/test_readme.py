"""The README's and docs/'s examples, checked against the code so they cannot drift.

- YAML examples parse, and their s3 sources pass the plugin's own config parser;
  the minimal config starts a real Datasette that uploads to this run's S3 server.
- The options table names exactly the options the parser accepts, with its defaults.
- Every `datasette files-s3 ...` command and option named anywhere in the docs
  exists, asked of the click command Datasette registers.
- Scripts, pytest options and environment variables in shell examples exist.
- Relative links and #anchors point at files and headings that exist.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from datasette.app import Datasette
from datasette.cli import cli as datasette_cli
from datasette.utils import pairs_to_nested_config

from datasette_files_s3.config import OPTIONS, S3SourceConfig, parse_size, parse_source_config
from tests.helpers import actor_cookies, upload

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def code_blocks(path: Path, *languages: str) -> list[str]:
    """The bodies of the fenced code blocks in `path` written in one of `languages`."""
    return [body for lang, body in FENCE.findall(path.read_text()) if lang in languages]


def prose(path: Path) -> str:
    """The Markdown of `path` without its fenced code blocks."""
    return FENCE.sub("", path.read_text())


def readme_sources() -> list[tuple[str, dict]]:
    """Every (source name, config) of an s3 source in the README's YAML examples."""
    found = []
    for body in code_blocks(README, "yaml"):
        config = yaml.safe_load(body)
        sources = (config.get("plugins") or {}).get("datasette-files", {}).get("sources", {})
        found += [(name, s["config"]) for name, s in sources.items() if s.get("storage") == "s3"]
    return found


def without_env_refs(config: dict) -> dict:
    """`config` with each {"$env": NAME} reference replaced by a placeholder string, as
    Datasette would after resolving it."""
    return {k: f"from-{v['$env']}" if isinstance(v, dict) and "$env" in v else v for k, v in config.items()}


def test_readme_stays_short_and_shows_the_two_development_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 400
    assert "uv run pytest" in text
    assert "./dev-server.sh" in text


def test_every_yaml_example_parses_and_its_s3_sources_are_accepted():
    for path in DOCS:
        for body in code_blocks(path, "yaml", "yml"):
            yaml.safe_load(body)
    sources = readme_sources()
    assert sources, "the README should show at least one s3 source in YAML"
    for name, config in sources:
        parse_source_config(name, without_env_refs(config))


def test_the_dash_s_example_builds_the_same_source_as_the_yaml():
    """`datasette serve -s key value ...` turned into config the way Datasette does it."""
    (serve,) = [b for b in code_blocks(README, "bash") if "datasette serve \\\n" in b]
    words = shlex.split(serve.replace("\\\n", " "))
    pairs = [(words[i + 1], words[i + 2]) for i, word in enumerate(words) if word == "-s"]
    config = pairs_to_nested_config(pairs)
    ((name, source),) = config["plugins"]["datasette-files"]["sources"].items()
    assert source["storage"] == "s3"
    parsed = parse_source_config(name, source["config"])
    yaml_name, yaml_config = readme_sources()[0]
    from_yaml = parse_source_config(yaml_name, without_env_refs(yaml_config))
    assert (name, parsed.bucket, parsed.prefix) == (yaml_name, from_yaml.bucket, from_yaml.prefix)
    assert config["permissions"]["files-upload"] == {"id": "*"}


def test_the_startup_error_example_is_what_the_parser_says():
    (error_block,) = [b for b in code_blocks(README, "") if b.startswith("Error: ")]
    name, config = readme_sources()[0]
    config = {k: v for k, v in without_env_refs(config).items() if k != "bucket"}
    with pytest.raises(ValueError) as raised:
        parse_source_config(name, config)
    assert error_block.strip() == f"Error: {raised.value}"


def options_table() -> dict[str, str]:
    """The README's options table: option name -> its default cell."""
    rows = {}
    section = README.read_text().split("\n### Options\n", 1)[1].split("\n#", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and line.startswith("| `"):
            for option in re.findall(r"`(\w+)`", cells[0]):
                rows[option] = cells[1]
    return rows


def test_the_options_table_lists_exactly_the_accepted_options_with_their_defaults():
    table = options_table()
    assert set(table) == OPTIONS
    defaults = {f.name: f.default for f in dataclasses.fields(S3SourceConfig)}
    for option, cell in table.items():
        # Only a cell that is one plain value (perhaps with a remark in brackets) states a default.
        plain = re.fullmatch(r"`([^`]+)`( \(.*\))?", cell)
        if not plain or plain[1] in OPTIONS:
            continue
        expected = defaults[option]
        if isinstance(expected, bool):
            assert plain[1] == str(expected).lower(), option
        elif isinstance(expected, int):
            assert parse_size(plain[1], option) == expected, option
        else:
            assert plain[1] == expected, option


async def test_the_minimal_config_uploads_a_file_to_a_real_bucket(bucket, monkeypatch):
    """The README's first YAML example, pointed at this run's S3 server, serves an upload."""
    config = yaml.safe_load(code_blocks(README, "yaml")[0])
    (name,) = config["plugins"]["datasette-files"]["sources"]
    source = config["plugins"]["datasette-files"]["sources"][name]["config"]
    server = bucket.source_config()
    # The keys arrive through the README's own $env references.
    monkeypatch.setenv(source["access_key_id"]["$env"], server.pop("access_key_id"))
    monkeypatch.setenv(source["secret_access_key"]["$env"], server.pop("secret_access_key"))
    source.update(server)
    ds = Datasette(memory=True, config=config, secret="readme-secret")
    await ds.invoke_startup()

    completed = await upload(ds, actor_cookies(ds), b"hello from the README", source=name)

    assert completed["file"]["source_slug"] == name
    assert len(bucket.keys(bucket.prefix)) == 1


def files_s3_group():
    """The `files-s3` click group, as Datasette's own CLI has it registered."""
    return datasette_cli.commands["files-s3"]


# A `datasette files-s3 <command> ...` mention: inside code it ends at the backtick or line end.
CLI_MENTION = re.compile(r"datasette files-s3 ([a-z][\w-]*)([^`\n]*)")
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def cli_mentions() -> list[tuple[str, str, set[str]]]:
    """(file, command, options used) for every mention of a files-s3 command in the docs."""
    return [
        (path.name, command, set(OPTION.findall(rest)))
        for path in DOCS
        for command, rest in CLI_MENTION.findall(path.read_text())
    ]


def test_every_files_s3_command_and_option_in_the_docs_exists():
    group = files_s3_group()
    mentions = cli_mentions()
    assert len(mentions) >= 15
    for where, command, options in mentions:
        assert command in group.commands, f"{where}: no command `datasette files-s3 {command}`"
        known = {opt for param in group.commands[command].params for opt in param.opts}
        assert options <= known, f"{where}: `files-s3 {command}` has no {sorted(options - known)}"


def test_the_readme_gives_every_command_a_line_and_each_answers_help():
    group = files_s3_group()
    readme_commands = {command for where, command, _ in cli_mentions() if where == "README.md"}
    assert readme_commands == set(group.commands)
    for command in group.commands:
        result = CliRunner().invoke(datasette_cli, ["files-s3", command, "--help"])
        assert result.exit_code == 0, result.output


def test_datasette_serve_options_in_the_docs_exist():
    known = {opt for param in datasette_cli.commands["serve"].params for opt in param.opts}
    for path in DOCS:
        for body in code_blocks(path, "bash"):
            for line in body.replace("\\\n", " ").splitlines():
                if line.lstrip().startswith("datasette serve"):
                    used = set(OPTION.findall(line.split("#")[0]))
                    assert used <= known, f"{path.name}: datasette serve has no {sorted(used - known)}"


def test_scripts_and_their_options_in_shell_examples_exist():
    script = re.compile(r"((?:\./|scripts/|benchmarks/)[\w./-]+\.(?:py|sh))([^\n#]*)")
    checked = 0
    for path in DOCS:
        for body in code_blocks(path, "bash"):
            for file, rest in script.findall(body.replace("\\\n", " ")):
                source = ROOT / file
                assert source.is_file(), f"{path.name}: no {file}"
                for option in OPTION.findall(rest):
                    assert f'"{option}"' in source.read_text(), f"{path.name}: {file} has no {option}"
                checked += 1
    assert checked >= 4


def test_pytest_options_in_shell_examples_exist():
    conftest = "\n".join(
        p.read_text() for p in [ROOT / "conftest.py", ROOT / "tests" / "conftest.py"] if p.is_file()
    )
    for path in DOCS:
        for body in code_blocks(path, "bash"):
            for line in body.splitlines():
                if "uv run pytest" in line:
                    for option in OPTION.findall(line.split("#")[0].split("pytest", 1)[1]):
                        assert f'"{option}"' in conftest, f"{path.name}: pytest has no {option}"


def test_environment_variables_in_the_docs_are_read_somewhere():
    code = "\n".join(
        p.read_text()
        for p in [ROOT / "dev-server.sh", ROOT / "conftest.py", *ROOT.glob("tests/*.py")]
        if p.is_file()
    )
    for path in DOCS:
        for name in set(re.findall(r"\b((?:DEV_|DATASETTE_FILES_S3_)[A-Z0-9_]+)", path.read_text())):
            assert name in code, f"{path.name}: nothing reads {name}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The #anchors of every heading in `path`, numbered as GitHub numbers repeats."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", prose(path), re.M):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found


def test_slug_follows_github():
    assert slug("`POST /-/files/upload/{source}/-/prepare`") == "post--filesuploadsource-prepare"
    assert slug("409: already completed") == "409-already-completed"
    assert slug("Downloads, thumbnails and the rest of datasette-files") == (
        "downloads-thumbnails-and-the-rest-of-datasette-files"
    )


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_point_at_files_and_headings_that_exist(path):
    # Inline code may hold brackets ([--apply]) that are not links.
    text = re.sub(r"`[^`\n]*`", "", prose(path))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{path.name}: link to missing {target}"
        if anchor:
            assert anchor in anchors(linked), f"{path.name}: no heading for {target}"
