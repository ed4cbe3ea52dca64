#!/usr/bin/env bash
# Start an embedded S3 server (moto) and Datasette with an `s3` source, ready
# to upload. Ctrl-C stops both.
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
STATE=.dev-server

if ! command -v uv >/dev/null 2>&1; then
  echo "Installing uv..."
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --quiet

mkdir -p "$STATE"
rm -f "$STATE/internal.db"

if [ -z "${DEV_S3_ENDPOINT:-}" ]; then
  ENDPOINT="http://127.0.0.1:$S3_PORT"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-dev-key-id}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-dev-secret-key}"
  echo "Starting embedded S3 (moto_server) on $ENDPOINT"
  uv run moto_server -H 127.0.0.1 -p "$S3_PORT" >"$STATE/moto.log" 2>&1 &
  MOTO_PID=$!
  trap 'kill $MOTO_PID 2>/dev/null || true' EXIT INT TERM
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break
    sleep 0.1
  done
elif [ "$DEV_S3_ENDPOINT" = "aws" ]; then
  ENDPOINT=""
else
  ENDPOINT="$DEV_S3_ENDPOINT"
fi

# The bucket, with a CORS rule that lets the Datasette origin POST/PUT and read ETag.
ENDPOINT="$ENDPOINT" BUCKET="$BUCKET" REGION="$REGION" ORIGIN="http://127.0.0.1:$PORT" uv run python - <<'PY'
import os
import boto3
from botocore.exceptions import ClientError

endpoint = os.environ["ENDPOINT"] or None
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=os.environ["REGION"])
bucket = os.environ["BUCKET"]
try:
    s3.head_bucket(Bucket=bucket)
except ClientError:
    s3.create_bucket(Bucket=bucket)
origins = [os.environ["ORIGIN"], os.environ["ORIGIN"].replace("127.0.0.1", "localhost")]
s3.put_bucket_cors(
    Bucket=bucket,
    CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": origins,
        "AllowedMethods": ["GET", "HEAD", "POST", "PUT"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3000,
    }]},
)
print(f"Bucket {bucket} ready, CORS allows {', '.join(origins)}")
PY

cat >"$STATE/datasette.yaml" <<YAML
plugins:
  datasette-files:
    sources:
      s3-files:
        storage: s3
        config:
          bucket: $BUCKET
          region: $REGION
          prefix: uploads
${ENDPOINT:+          endpoint_url: $ENDPOINT}
          access_key_id:
            \$env: AWS_ACCESS_KEY_ID
          secret_access_key:
            \$env: AWS_SECRET_ACCESS_KEY
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

echo "Datasette on http://127.0.0.1:$PORT - open the URL below to sign in as root, then"
echo "upload at http://127.0.0.1:$PORT/-/files/upload/s3-files"
uv run datasette serve --memory -c "$STATE/datasette.yaml" --internal "$STATE/internal.db" \
  -h 127.0.0.1 -p "$PORT" --root
