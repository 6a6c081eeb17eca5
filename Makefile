# UPanel. "make test" is the one command that runs every test; it installs and
# starts what the tests need (as root on Debian). See README.md.
GO ?= go

AGENT_ARCHES := amd64 arm64

.PHONY: build run test bench check
# build makes the panel and the agents it installs on servers, which it looks
# for next to its own executable (or in UPANEL_AGENT_DIR).
build:
	$(GO) build -o bin/upanel ./cmd/upanel
	for arch in $(AGENT_ARCHES); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags='-s -w' -o bin/upanel-agent-linux-$$arch ./cmd/upanel-agent || exit 1; \
	done

# run is the one command that runs the panel (SQLite in ./data).
run: build
	./bin/upanel serve

test:
	./scripts/test.sh

bench:
	./scripts/bench.sh

# check is the quick local gate: formatting and vet, no services.
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
