#!/bin/sh
# Tests the dns-webhook server against openapi.yaml with schemathesis (PyPI): starts the
# built binary on local ports, runs every check for MAX_TIME seconds, stops the server.
# Usage: playground/dns-webhook/check-contract.sh [path/to/dns-webhook]
# Needs `schemathesis` on PATH (pip install schemathesis).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-"$here/../../target/debug/dns-webhook"}
port=${DNS_WEBHOOK_TEST_PORT:-18888}
health=${DNS_WEBHOOK_TEST_HEALTH_PORT:-18080}
"$binary" --listen "127.0.0.1:$port" --health-listen "127.0.0.1:$health" &
server=$!
trap 'kill "$server"' EXIT INT TERM
# No domain filter: schemathesis generates arbitrary names, and a name outside a filter
# is a refusal the schema cannot express.
tries=0
until curl -fsS "http://127.0.0.1:$health/healthz" >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 50 ] || { echo "dns-webhook did not start" >&2; exit 1; }
  sleep 0.2
done
schemathesis run "$here/openapi.yaml" --url "http://127.0.0.1:$port" \
  --checks all --max-time "${MAX_TIME:-60}" --workers 1
