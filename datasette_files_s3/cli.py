"""`datasette files-s3 ...`: list sources, set up CORS, diagnose, clean up.

The commands read configuration exactly as `datasette serve` does (`-c`,
`-s key value`, `$env` / `$file` references via `Datasette.plugin_config`) and
reach S3 through each source's own `S3Storage`. They print bucket names,
prefixes and hosts, never keys, tokens, broker secrets or presigned URLs.
"""

from __future__ import annotations

import asyncio
import json
import time

import click
from datasette.app import Datasette
from datasette.utils import deep_dict_update, pairs_to_nested_config, parse_metadata

from . import bucket_config, cleanup, doctor
from .config import S3SourceConfig, parse_source_config, safe_url
from .errors import FilesS3Error, NotPermitted
from .storage import S3Storage

COMMAND = "datasette files-s3"
MARKS = {doctor.PASS: "[PASS]", doctor.WARN: "[WARN]", doctor.FAIL: "[FAIL]"}


def config_options(function):
    """`-c/--config` and `-s/--setting`, as `datasette serve` takes them."""
    function = click.option(
        "-s",
        "--setting",
        "settings",
        type=(str, str),
        multiple=True,
        help="nested.key value setting to use in Datasette configuration",
    )(function)
    return click.option(
        "-c", "--config", type=click.File("r"), help="Path to JSON/YAML Datasette configuration file"
    )(function)


def load_datasette(config, settings, internal: str | None = None) -> Datasette:
    """A Datasette with the configuration `datasette serve` would build from these options."""
    config_data = (parse_metadata(config.read()) if config else None) or {}
    if settings:
        deep_dict_update(config_data, pairs_to_nested_config(list(settings)))
    return Datasette(config=config_data, internal=internal)


def s3_sources(datasette) -> dict[str, dict]:
    """{source name: its config block, `$env` resolved} for every `storage: s3` source."""
    sources = (datasette.plugin_config("datasette-files") or {}).get("sources") or {}
    return {
        name: (definition.get("config") or {})
        for name, definition in sources.items()
        if (definition or {}).get("storage") == "s3"
    }


def pick_sources(datasette, source: str | None) -> dict[str, dict]:
    """The named source, or all s3 sources when none is named; a usage error otherwise."""
    sources = s3_sources(datasette)
    if not sources:
        raise click.ClickException(
            "no datasette-files source has storage: s3 in this configuration (did you pass -c?)"
        )
    if source is None:
        return sources
    if source not in sources:
        raise click.BadParameter(
            f"no s3 source named '{source}'; s3 sources: {', '.join(sorted(sources))}", param_hint="SOURCE"
        )
    return {source: sources[source]}


async def open_storage(datasette, raw: dict) -> S3Storage:
    """A configured S3Storage for a source, as datasette-files would make it (raises ConfigError)."""
    storage = S3Storage.bound_to(datasette)()
    await storage.configure(raw)
    return storage


def config_hint(config) -> str:
    """` -c FILE` for fixes that repeat the command (never `-s` values: they may be secrets)."""
    return f" -c {config.name}" if config is not None and getattr(config, "name", None) else ""


def source_summary(name: str, config: S3SourceConfig) -> dict:
    """What `sources` shows for one source."""
    return {
        "source": name,
        "bucket": config.bucket or "(from the credentials broker)",
        "prefix": config.prefix or "(whole bucket)",
        "region": config.region,
        "endpoint": safe_url(config.endpoint_url) or "AWS S3",
        "public_endpoint": safe_url(config.public_endpoint_url) or None,
        "direct_uploads": config.direct_uploads,
        "credentials": config.credentials_origin,
    }


def run(coroutine):
    """Run a command's coroutine; our own errors become a one-line `Error: ...` and exit 1."""
    try:
        return asyncio.run(coroutine)
    except FilesS3Error as ex:
        raise click.ClickException(str(ex)) from None


def parse_origins(origins) -> list[str]:
    """Validated, normalised --origin values."""
    try:
        return [bucket_config.normalize_origin(origin) for origin in origins]
    except ValueError as ex:
        raise click.BadParameter(str(ex), param_hint="--origin") from None


@click.group(name="files-s3")
def files_s3():
    """Bucket tools for datasette-files-s3 sources: sources, cors, doctor, cleanup."""


@files_s3.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Output JSON")
def sources(config, settings, as_json):
    """List the s3 sources: bucket, prefix, endpoint and where credentials come from."""
    datasette = load_datasette(config, settings)
    summaries, failed = [], False
    for name, raw in s3_sources(datasette).items():
        try:
            summaries.append(source_summary(name, parse_source_config(name, raw)))
        except FilesS3Error as ex:
            summaries.append({"source": name, "error": str(ex)})
            failed = True
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
    elif not summaries:
        click.echo("No datasette-files source has storage: s3 in this configuration.")
    for summary in [] if as_json else summaries:
        click.echo(summary["source"])
        for label, value in summary.items():
            if label != "source" and value is not None:
                click.echo(f"  {label + ':':<16} {value}")
    if failed:
        raise SystemExit(1)


@files_s3.command(name="cors")
@click.argument("source")
@config_options
@click.option("--origin", "origins", multiple=True, help="Origin Datasette is served from (repeatable)")
@click.option("--apply", "apply_", is_flag=True, help="Merge the needed rule into the bucket's rules")
@click.option("--dry-run", is_flag=True, help="Print the exact CORS JSON --apply would write; change nothing")
def cors_command(source, config, settings, origins, apply_, dry_run):
    """Show the bucket's CORS rules and the rule browser uploads need; --apply to add it."""
    datasette = load_datasette(config, settings)
    raw = pick_sources(datasette, source)[source]
    origins = parse_origins(origins)
    if (apply_ or dry_run) and not origins:
        raise click.UsageError("--apply and --dry-run need at least one --origin")

    async def main():
        storage = await open_storage(datasette, raw)
        connection = await storage.connection()
        try:
            current = await bucket_config.get_cors_rules(storage)
        except NotPermitted:
            refuse_bucket_call(
                f"Reading the CORS rules of bucket '{connection.bucket}' is",
                "check that they include this rule",
                bucket_config.needed_cors_rule(origins or ["https://datasette.example.com"]),
                failed=apply_ or dry_run,
            )
            return
        merged = bucket_config.merge_cors_rules(current, origins) if origins else current
        if dry_run:
            click.echo(json.dumps({"CORSRules": merged}, indent=2))
            return
        click.echo(f"Bucket '{connection.bucket}' (source {source}) has {len(current)} CORS rule(s):")
        click.echo(json.dumps({"CORSRules": current}, indent=2))
        if not origins:
            click.echo("\nBrowser uploads need this rule, for the origins Datasette is served from:")
            click.echo(
                json.dumps(bucket_config.needed_cors_rule(["https://datasette.example.com"]), indent=2)
            )
            click.echo("\nRun again with --origin ORIGIN to compare, and --apply to write it.")
            return
        click.echo("\nThis plugin needs:")
        click.echo(json.dumps(merged[0], indent=2))
        if bucket_config.same_cors_rules(merged, current):
            click.echo("\nThe bucket already has this rule; nothing to do.")
        elif apply_:
            try:
                await bucket_config.put_cors_rules(storage, merged)
            except NotPermitted:
                refuse_bucket_call("Writing them is", "add this rule", merged[0], failed=True)
            kept = len(merged) - 1
            click.echo(f"\nApplied: wrote our rule and kept {kept} other rule(s).")
        else:
            click.echo("\nThe bucket does not have this rule yet. Run again with --apply to add it.")

    run(main())


@files_s3.command(name="doctor")
@click.argument("source", required=False)
@config_options
@click.option("--origin", "origins", multiple=True, help="Origin Datasette is served from (repeatable)")
def doctor_command(source, config, settings, origins):
    """Check each s3 source end to end; exit status 1 if anything fails."""
    datasette = load_datasette(config, settings)
    selected = pick_sources(datasette, source)
    origins = parse_origins(origins)

    async def main() -> bool:
        ok = True
        for name, raw in selected.items():
            click.echo(f"Source {name}")
            try:
                storage = await open_storage(datasette, raw)
            except FilesS3Error as ex:
                checks = [doctor.Check("config", doctor.FAIL, str(ex), "fix the source's config block")]
            else:
                checks = await doctor.run_checks(storage, origins, COMMAND, config_hint(config))
            for check in checks:
                click.echo(render_check(check))
            ok = ok and all(check.status != doctor.FAIL for check in checks)
        return ok

    ok = run(main())
    click.echo("All checks passed." if ok else "Some checks failed; see the fixes above.")
    raise SystemExit(0 if ok else 1)


def render_check(check: doctor.Check) -> str:
    """One line per check, and a `fix:` line under anything that is not a pass."""
    line = f"  {MARKS[check.status]} {check.name}: {check.message}"
    if check.fix and check.status != doctor.PASS:
        line += f"\n         fix: {check.fix}"
    return line


@files_s3.command(name="cleanup")
@click.argument("source", required=False)
@config_options
@click.option(
    "--older-than",
    default="24h",
    show_default=True,
    help="Abort multipart uploads older than this; with --unrecorded, delete unrecorded objects only "
    "once older than this and than any token that could still confirm them",
)
@click.option(
    "--internal",
    type=click.Path(exists=True, dir_okay=False),
    help="The internal database `datasette serve --internal` uses: needed to delete any object",
)
@click.option(
    "--unrecorded",
    is_flag=True,
    help="Also delete objects in our key layout that this internal database has no record of; only "
    "safe when this file is the one registry of every Datasette serving the prefix",
)
@click.option("--dry-run", is_flag=True, help="Report what would be done; change nothing")
@click.option("--lifecycle", is_flag=True, help="Install a bucket lifecycle rule to abort them instead")
def cleanup_command(source, config, settings, older_than, internal, unrecorded, dry_run, lifecycle):
    """Abort stale multipart uploads and delete unconfirmed objects under each prefix.

    Objects are deleted only with --internal and only if datasette-files has not
    registered them: those whose pending upload's token has expired. Objects
    with no record at all in the internal database whose key is
    <ulid>/<filename> below the prefix are only counted, unless --unrecorded is
    given: then those are deleted once their ULID and their LastModified are
    older than --older-than and than the longest upload token plus its confirm
    grace, unless any source has a pending row for them or their ULID predates
    this database's record of the source. Nothing outside the prefix, or laid
    out otherwise, is touched.
    """
    if unrecorded and not internal:
        raise click.UsageError(
            "--unrecorded needs --internal PATH: only the internal database tells which objects "
            "datasette-files has recorded"
        )
    try:
        older_than_seconds = cleanup.parse_age(older_than)
    except ValueError as ex:
        raise click.BadParameter(str(ex), param_hint="--older-than") from None
    datasette = load_datasette(config, settings, internal=internal)
    selected = pick_sources(datasette, source)

    async def main():
        if internal and not lifecycle:
            await cleanup.check_internal_database(datasette)
        for name, raw in selected.items():
            storage = await open_storage(datasette, raw)
            if lifecycle:
                await install_lifecycle(storage, older_than_seconds, dry_run)
                continue
            result = await cleanup.run_cleanup(
                storage,
                datasette if internal else None,
                older_than_seconds,
                dry_run,
                time.time(),
                unrecorded=unrecorded,
            )
            report_cleanup(name, result)

    run(main())


def refuse_bucket_call(doing: str, ask: str, rule: dict, failed: bool) -> None:
    """Say that a bucket-level call is not permitted with these keys (as with keys
    scoped to a tenant's prefix), with the rule to hand to the bucket owner;
    exit status 1 when the command was asked to change the bucket."""
    click.echo(f"{doing} {bucket_config.not_permitted(ask)}:")
    click.echo(json.dumps(rule, indent=2))
    if failed:
        raise click.ClickException("nothing was changed")


def rule_id(rule: dict) -> str:
    return rule.get("ID", "")


async def install_lifecycle(storage, older_than: int, dry_run: bool) -> None:
    """`cleanup --lifecycle`: merge our abort-multipart rule into the bucket's lifecycle rules."""
    connection = await storage.connection()
    rule = bucket_config.lifecycle_rule(connection.prefix, older_than)
    try:
        current, merged = await bucket_config.lifecycle_plan(storage, older_than)
    except NotPermitted:
        reading = f"Reading the lifecycle rules of bucket '{connection.bucket}' is"
        return refuse_bucket_call(reading, "add this rule", rule, failed=not dry_run)
    if dry_run:
        click.echo(json.dumps({"Rules": merged}, indent=2))
        return
    # Lifecycle rules have no order (Ceph RGW lists them by ID).
    if sorted(merged, key=rule_id) == sorted(current, key=rule_id):
        click.echo(f"Bucket '{connection.bucket}' already has the lifecycle rule; nothing to do.")
        return
    try:
        await bucket_config.put_lifecycle_rules(storage, merged)
    except NotPermitted:
        return refuse_bucket_call("Writing them is", "add this rule", rule, failed=True)
    days = merged[-1]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
    click.echo(
        f"Bucket '{connection.bucket}': installed lifecycle rule '{bucket_config.LIFECYCLE_RULE_ID}' "
        f"(abort incomplete multipart uploads under '{connection.prefix}' after {days} day(s)); "
        f"kept {len(merged) - 1} other rule(s)."
    )


def report_cleanup(name: str, result: cleanup.CleanupResult) -> None:
    """Print what cleanup did for one source, with counts and bytes freed."""
    would = "would " if result.dry_run else ""
    verbs = {"abort": f"{would}abort", "delete": f"{would}delete", "keep": "keep"}
    click.echo(f"Source {name}: bucket '{result.bucket}', prefix '{result.prefix}'")
    for note in result.notes:
        click.echo(f"  note: {note}")
    for action in result.actions:
        size = f", {action.size:,} bytes" if action.kind != "keep" else ""
        click.echo(f"  {verbs[action.kind]} {action.key} ({action.reason}{size})")
    summary = (
        f"{'Would abort' if result.dry_run else 'Aborted'} {result.count('abort')} multipart upload(s), "
        f"{'would delete' if result.dry_run else 'deleted'} {result.count('delete')} object(s), "
        f"{'would free' if result.dry_run else 'freed'} {result.bytes_freed:,} bytes"
        f"{' (dry run: nothing changed)' if result.dry_run else ''}."
    )
    click.echo(summary)
