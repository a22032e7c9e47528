#!/usr/bin/env bash
# Start/stop the UIs on 127.0.0.1: Dagster webserver + daemon, MLflow UI, Evidently UI.
# PIDs live in $LTE_HOME/run/; `stop` kills exactly those process groups.
set -euo pipefail
set -m  # background jobs get their own process group and honour SIGTERM (see STACK-NOTES: dagster dev)
cd "$(dirname "$0")/.."
BIN=.venv/bin
export DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
export LTE_HOME="${LTE_HOME:-$PWD/.lte}"
DAGSTER_PORT="${LTE_DAGSTER_PORT:-3000}"
MLFLOW_PORT="${LTE_MLFLOW_PORT:-5000}"
EVIDENTLY_PORT="${LTE_EVIDENTLY_PORT:-8000}"
RUN_DIR="$LTE_HOME/run"
mkdir -p "$RUN_DIR"

json() { "$BIN/python" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

start() {
  local paths; paths=$("$BIN/lte" paths --json)
  export DAGSTER_HOME; DAGSTER_HOME=$(echo "$paths" | json dagster_home)
  local mlflow_uri; mlflow_uri=$(echo "$paths" | json mlflow_tracking_uri)
  local mlflow_art; mlflow_art=$(echo "$paths" | json mlflow_artifacts)
  local ws; ws=$(echo "$paths" | json evidently_workspace)
  mkdir -p "$ws"
  launch dagster-webserver "$BIN/dagster-webserver" -m orchestration.definitions -h 127.0.0.1 -p "$DAGSTER_PORT"
  # The daemon starts once the webserver has created the instance's sqlite storage (starting both
  # at once on a fresh home races on its migrations).
  wait_for "http://127.0.0.1:$DAGSTER_PORT/server_info" Dagster
  launch dagster-daemon "$BIN/dagster-daemon" run -m orchestration.definitions
  launch mlflow "$BIN/mlflow" server --backend-store-uri "$mlflow_uri" --default-artifact-root "$mlflow_art" \
    --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1
  launch evidently "$BIN/evidently" ui --workspace "$ws" --host 127.0.0.1 --port "$EVIDENTLY_PORT"
  wait_for "http://127.0.0.1:$MLFLOW_PORT/health" MLflow
  wait_for "http://127.0.0.1:$EVIDENTLY_PORT/api/version" Evidently
  echo
  echo "Dagster    http://127.0.0.1:$DAGSTER_PORT   (assets, runs, checks; schedules+sensors tick)"
  echo "MLflow     http://127.0.0.1:$MLFLOW_PORT   (runs, registered model, aliases)"
  echo "Evidently  http://127.0.0.1:$EVIDENTLY_PORT   (LTE drift dashboard)"
  echo "Logs in $RUN_DIR; stop with: make ui-stop"
}

launch() {
  local name=$1; shift
  if [ -f "$RUN_DIR/$name.pid" ] && kill -0 "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$RUN_DIR/$name.pid"))"; return
  fi
  "$@" >"$RUN_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
}

wait_for() {
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then echo "$2 ready"; return 0; fi
    sleep 0.5
  done
  echo "$2 did not answer at $1; see $RUN_DIR/*.log" >&2
  return 1
}

stop() {
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -e "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
    fi
    rm -f "$pidfile"
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: infra/ui.sh start|stop" >&2; exit 2 ;;
esac
