"""`datasette files-s3 cors`: showing, merging and applying the CORS rule browser uploads need."""

from __future__ import annotations

import json

from datasette_files_s3 import bucket_config
from tests.cli_support import (
    ORIGIN,
    SOURCE,
    files_s3,
)

FOREIGN_RULE = {"ID": "someone-else", "AllowedOrigins": ["https://other.example"], "AllowedMethods": ["GET"]}


def test_cors_apply_adds_our_rule_and_keeps_foreign_rules(s3_server, bucket_name, config_path):
    client = s3_server.client()
    client.put_bucket_cors(Bucket=bucket_name, CORSConfiguration={"CORSRules": [FOREIGN_RULE]})
    result = files_s3("cors", SOURCE, "-c", config_path, "--origin", ORIGIN, "--apply")
    assert result.exit_code == 0, result.output
    rules = client.get_bucket_cors(Bucket=bucket_name)["CORSRules"]
    assert bucket_config.same_cors_rules(rules, [bucket_config.needed_cors_rule([ORIGIN]), FOREIGN_RULE])
    assert rules[0]["ExposeHeaders"] == ["ETag"]


def test_cors_apply_again_keeps_earlier_origins(s3_server, bucket_name, config_path):
    files_s3("cors", SOURCE, "-c", config_path, "--origin", ORIGIN, "--apply")
    files_s3("cors", SOURCE, "-c", config_path, "--origin", "http://localhost:8001", "--apply")
    [rule] = s3_server.client().get_bucket_cors(Bucket=bucket_name)["CORSRules"]
    assert rule["AllowedOrigins"] == sorted([ORIGIN, "http://localhost:8001"])


def test_cors_dry_run_prints_the_exact_json_and_changes_nothing(s3_server, bucket_name, config_path):
    client = s3_server.client()
    client.put_bucket_cors(Bucket=bucket_name, CORSConfiguration={"CORSRules": [FOREIGN_RULE]})
    result = files_s3("cors", SOURCE, "-c", config_path, "--origin", ORIGIN, "--apply", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "CORSRules": [bucket_config.needed_cors_rule([ORIGIN]), FOREIGN_RULE]
    }
    assert client.get_bucket_cors(Bucket=bucket_name)["CORSRules"] == [FOREIGN_RULE]


def test_cors_unknown_source_is_a_usage_error(config_path):
    result = files_s3("cors", "nope", "-c", config_path, "--origin", ORIGIN)
    assert result.exit_code == 2
    assert SOURCE in result.output
