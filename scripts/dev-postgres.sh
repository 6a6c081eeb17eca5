#!/usr/bin/env bash
# Starts a private PostgreSQL for working on UPanel by hand and prints its URL;
# stop it with Ctrl-C. make test starts its own.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
trap stop_services EXIT
start_postgres
echo "$UPANEL_TEST_POSTGRES_URL"
sleep infinity
