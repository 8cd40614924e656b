# vzfleet — `make help` lists the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w \
	-X github.com/vzfleet/vzfleet/internal/version.Version=$(VERSION) \
	-X github.com/vzfleet/vzfleet/internal/version.Commit=$(COMMIT) \
	-X github.com/vzfleet/vzfleet/internal/version.Date=$(DATE)
BIN := bin
TOOLS_BIN := $(CURDIR)/hack/tools/bin
export VZFLEET_TOOLS_BIN := $(TOOLS_BIN)
TEST_TIMEOUT ?= 40m

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the Debian packages the tests run (registry, sshd, dockerd, ...)
	@hack/deps.sh

.PHONY: tools
tools: ## Build kube-apiserver, etcd, kubectl, scheduler, controller-manager, metrics-server, staticcheck, oras (cached)
	@hack/tools/build.sh

.PHONY: build build-linux
build: build-linux ## Build fleetctl and vz-node for linux/amd64 and darwin/arm64 into bin/
	CGO_ENABLED=0 GOOS=darwin GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/darwin-arm64/ ./cmd/...
	@echo "built: $$(ls $(BIN)/*/* | tr '\n' ' ')"

# The lab runs the linux/amd64 binaries only.
build-linux:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux-amd64/ ./cmd/...

.PHONY: test
test: deps tools ## Run every test: unit, fuzz seeds and end-to-end against real components
	@echo "test: go test ./... (real etcd, kube-apiserver, registry, sshd and dockerd on loopback)"
	$(GO) test -timeout $(TEST_TIMEOUT) ./...

.PHONY: e2e
e2e: deps tools ## Run only the end-to-end suite (test/e2e)
	$(GO) test -timeout $(TEST_TIMEOUT) -v ./test/e2e/...

.PHONY: lint
lint: tools ## gofmt, go vet (linux and darwin) and staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [[ -n "$$unformatted" ]]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./...
	$(TOOLS_BIN)/staticcheck ./...

.PHONY: bench
bench: deps tools ## Run the benchmarks in bench/ (see bench/README.md)
	$(GO) test -run '^$$' -bench . -benchmem ./bench/...

.PHONY: demo
demo: deps tools build-linux ## Bring up the lab: control plane, registry, 3 simulated Macs, fleetctl apply
	$(GO) run ./hack/lab

.PHONY: clean
clean: ## Remove built binaries and the tool cache
	rm -rf $(BIN) $(TOOLS_BIN) .cache
