#!/usr/bin/env bash
# Runs every test, once, with -race, against SQLite and a private PostgreSQL that
# this script installs (as root, on Debian) and starts. Under CI=true a test that
# lacks a service fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
trap stop_services EXIT

need_packages gcc:gcc oathtool:oathtool chromium:chromium # -race needs cgo; 2FA codes from an independent implementation; browser tests
start_postgres
start_docker # a Docker daemon and the test-host image, for internal/testhost

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
go tool -n mailpit >/dev/null # build the test SMTP server once, up front
go test -race -count=1 -timeout 75m ./... "$@"
