#!/usr/bin/env bash
# The MLflow tracking + model registry server for a shared deployment: metadata in Postgres,
# model artifacts in S3, proxied by the server (clients upload and download through it, so only
# the server needs S3 credentials). Binds 127.0.0.1 unless MLFLOW_HOST says otherwise.
#
#   MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://mlflow:$PW@db.internal:5432/mlflow \
#   MLFLOW_ARTIFACTS_DESTINATION=s3://my-bucket/mlflow \
#   infra/mlflow-server.sh
#
# Optional: MLFLOW_HOST (127.0.0.1), MLFLOW_PORT (5000), MLFLOW_S3_ENDPOINT_URL (MinIO, moto),
# AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_DEFAULT_REGION or an instance role for S3.
# Clients then use LTE_REGISTRY__TRACKING_URI=http://HOST:PORT (the pipeline and `lte` commands).
#
# One worker and no job runner: the default (4 workers + huey consumers) takes ~2.9 GB of RAM for
# nothing we use; this takes ~0.55 GB (../shared/STACK-NOTES.md, MLflow).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${LTE_VENV:-.venv}/bin"

: "${MLFLOW_BACKEND_STORE_URI:?set it, e.g. postgresql+psycopg2://USER:PASSWORD@HOST:5432/mlflow}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set it, e.g. s3://BUCKET/mlflow}"
HOST="${MLFLOW_HOST:-127.0.0.1}"
PORT="${MLFLOW_PORT:-5000}"

if [[ "$MLFLOW_BACKEND_STORE_URI" == postgresql* ]] \
  && ! "$BIN/python" -c "import psycopg2" 2>/dev/null; then
  echo "MLflow needs a Postgres driver (psycopg2) for a postgresql:// backend store:" >&2
  echo "  $BIN/pip install psycopg2-binary" >&2
  exit 1
fi

export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
exec "$BIN/mlflow" server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --serve-artifacts \
  --host "$HOST" --port "$PORT" \
  --workers 1
