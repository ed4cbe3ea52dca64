#!/usr/bin/env bash
# Start an embedded S3 server and Datasette with an `s3` source, ready to
# upload. Ctrl-C, or a TERM sent to this script, stops both.
#
#   ./dev-server.sh                      # moto: starts in a second, enforces nothing
#   DEV_S3=localstack ./dev-server.sh    # LocalStack's S3: enforces POST policies and CORS as AWS does
#   DEV_S3=ceph ./dev-server.sh          # Ceph RGW, a real S3 implementation: enforces POST policies
#                                        # down to their signature and fields; checks no checksum
#
# Point it at an existing S3-compatible endpoint instead with:
#   DEV_S3_ENDPOINT=http://127.0.0.1:9000 DEV_S3_BUCKET=my-bucket \
#   AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... ./dev-server.sh
# (DEV_S3_ENDPOINT=aws means real AWS S3; DEV_S3_REGION defaults to us-east-1.)
set -euo pipefail
cd "$(dirname "$0")"

PORT="${PORT:-8001}"
S3_PORT="${S3_PORT:-9100}"
BUCKET="${DEV_S3_BUCKET:-datasette-files-dev}"
REGION="${DEV_S3_REGION:-us-east-1}"
DEV_S3="${DEV_S3:-moto}"
STATE="${DEV_STATE:-.dev-server}"  # where the config, logs and internal database go
CONFIG="$STATE/datasette.yaml"
SOURCE=s3-files
ORIGIN="http://127.0.0.1:$PORT"

. scripts/ensure-uv.sh  # installs uv if needed, where your next terminal finds it
uv sync --quiet
BIN=.venv/bin

mkdir -p "$STATE"
rm -f "$STATE/internal.db"

# Every server runs in the background so that a signal reaches this script at
# once (bash runs a trap only after the foreground command ends) and stops them all.
CHILDREN=()
stop() {
  trap - EXIT INT TERM
  for pid in "${CHILDREN[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${CHILDREN[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

# wait_for URL PID [SECONDS]: until URL answers; fails if PID exits first.
wait_for() {
  "$BIN/python" - "$@" <<'PY'
import sys, time, urllib.error, urllib.request, os
url, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3] if len(sys.argv) > 3 else 60)
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(f"the server for {url} exited before answering; see the logs beside the config")
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # it answers
    except OSError:
        time.sleep(0.2)
sys.exit(f"{url} did not answer within {timeout:.0f}s")
PY
}

if [ -z "${DEV_S3_ENDPOINT:-}" ]; then
  ENDPOINT="http://127.0.0.1:$S3_PORT"
  # Throwaway keys of the embedded server, written into the config so that the
  # bucket tools work from any terminal. LocalStack checks presigned URLs
  # against the fixed secret `test`, Ceph against the user it makes with these
  # keys; moto checks nothing.
  KEYS="          access_key_id: dev-key-id
          secret_access_key: test"
  case "$DEV_S3" in
    moto)
      echo "Starting embedded S3 (moto_server) on $ENDPOINT"
      "$BIN/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$STATE/s3.log" 2>&1 &
      CHILDREN+=($!)
      wait_for "$ENDPOINT/moto-api/" "$!" 30
      ;;
    localstack)
      echo "Starting embedded S3 (LocalStack) on $ENDPOINT (the first run installs it, about 5 s)"
      "$BIN/python" scripts/localstack_s3.py serve --port "$S3_PORT" >"$STATE/s3.log" 2>&1 &
      CHILDREN+=($!)
      wait_for "$ENDPOINT/_localstack/health" "$!" 180
      ;;
    ceph)
      echo "Starting embedded S3 (Ceph RGW) on $ENDPOINT (the first run installs it with apt, about 30 s)"
      "$BIN/python" scripts/ceph_rgw.py serve --port "$S3_PORT" --access-key dev-key-id --secret-key test \
        >"$STATE/s3.log" 2>&1 &
      CHILDREN+=($!)
      wait_for "$ENDPOINT/" "$!" 240
      ;;
    *)
      echo "DEV_S3 must be moto, localstack or ceph, not '$DEV_S3'" >&2
      exit 2
      ;;
  esac
  S3_KEY_ID=dev-key-id S3_SECRET=test
else
  [ "$DEV_S3_ENDPOINT" = "aws" ] && ENDPOINT="" || ENDPOINT="$DEV_S3_ENDPOINT"
  # Your own keys stay in your environment, never in a file.
  KEYS="          access_key_id:
            \$env: AWS_ACCESS_KEY_ID
          secret_access_key:
            \$env: AWS_SECRET_ACCESS_KEY"
  S3_KEY_ID="${AWS_ACCESS_KEY_ID:-}" S3_SECRET="${AWS_SECRET_ACCESS_KEY:-}"
  KEYS_NOTE=" (with the same AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set)"
fi

cat >"$CONFIG" <<YAML
plugins:
  datasette-files:
    sources:
      $SOURCE:
        storage: s3
        config:
          bucket: $BUCKET
          region: $REGION
          prefix: uploads
${ENDPOINT:+          endpoint_url: $ENDPOINT
}$KEYS
permissions:
  files-browse:
    id: root
  files-upload:
    id: root
  files-edit:
    id: root
  files-delete:
    id: root
YAML

# The bucket, if it is missing; then the CORS and lifecycle rules, set by our own commands.
ENDPOINT="$ENDPOINT" BUCKET="$BUCKET" REGION="$REGION" AWS_ACCESS_KEY_ID="$S3_KEY_ID" \
  AWS_SECRET_ACCESS_KEY="$S3_SECRET" "$BIN/python" - <<'PY'
import os
import boto3
from botocore.exceptions import ClientError

s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"] or None, region_name=os.environ["REGION"])
try:
    s3.head_bucket(Bucket=os.environ["BUCKET"])
except ClientError:
    s3.create_bucket(Bucket=os.environ["BUCKET"])
PY
"$BIN/datasette" files-s3 cors "$SOURCE" -c "$CONFIG" --origin "$ORIGIN" --origin "http://localhost:$PORT" \
  --apply >"$STATE/cors.log"
"$BIN/datasette" files-s3 cleanup "$SOURCE" -c "$CONFIG" --lifecycle >"$STATE/lifecycle.log"
echo "Bucket $BUCKET ready; CORS allows $ORIGIN and http://localhost:$PORT"

# A sign-in link that works every time (Datasette's --root link works once):
# scripts/dev_server_plugins/dev_sign_in.py checks this run's key.
DEV_SIGN_IN_KEY=$("$BIN/python" -c 'import secrets; print(secrets.token_hex(16))')
DEV_SIGN_IN_KEY="$DEV_SIGN_IN_KEY" "$BIN/datasette" serve --memory -c "$CONFIG" --internal "$STATE/internal.db" \
  --plugins-dir scripts/dev_server_plugins -h 127.0.0.1 -p "$PORT" >"$STATE/datasette.log" 2>&1 &
DATASETTE=$!
CHILDREN+=($DATASETTE)
wait_for "$ORIGIN/-/versions.json" "$DATASETTE" 60
SIGN_IN="$ORIGIN/-/dev-sign-in?key=$DEV_SIGN_IN_KEY"

cat <<TEXT

Datasette is running on $ORIGIN (its log: $STATE/datasette.log). Open:
  sign in as root:  $SIGN_IN
                    (works every time, in any browser, until Ctrl-C)
  upload files:     $ORIGIN/-/files-s3/upload/$SOURCE
  list files:       $ORIGIN/-/files
Check the bucket from another terminal, in this directory${KEYS_NOTE:-}:
${UV_PATH_HINT:+  $UV_PATH_HINT
}  uv run datasette files-s3 doctor -c $CONFIG --origin $ORIGIN
Ctrl-C stops Datasette and the S3 server.
TEXT

# Until a server exits or a signal arrives; then stop() ends the rest.
wait -n "${CHILDREN[@]}"
