# UPanel. "make test" is the one command that runs every test; it installs and
# starts what the tests need (as root on Debian). See README.md.
GO ?= go

.PHONY: build test bench check
build:
	$(GO) build -o bin/upanel ./cmd/upanel

test:
	./scripts/test.sh

bench:
	./scripts/bench.sh

# check is the quick local gate: formatting and vet, no services.
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
