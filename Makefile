# netboot — run `make help` for the targets.
#
# Two commands do all set-up on a fresh Debian 12 machine (as root):
#   make run    netbootd on the bundled example (images/example/netbootd.yaml)
#   make test   installs every package the tests need, then runs them all

GO        ?= go
# go-ceph must be told which Ceph release it builds against; Debian 12 ships
# Pacific (16.2). See rbd/README.md for Reef/Squid.
CEPH_TAGS ?= pacific
GOFLAGS   := -buildvcs=false -tags=$(CEPH_TAGS)
export GOFLAGS
BIN       := bin
TEST_TIMEOUT ?= 40m
# Serial logs, netbootd logs, screenshots and timings of the VM and browser
# tests are kept here (CI keeps them as artifacts).
NETBOOT_ARTIFACTS ?= $(CURDIR)/test/artifacts
export NETBOOT_ARTIFACTS

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install the Debian packages and cached artifacts (kernel) that building and testing need, when missing
	@bash scripts/deps.sh
	@command -v $(GO) >/dev/null || { echo "Go is not installed: see README"; exit 1; }

.PHONY: build
build: ## Build netbootd, netbootctl and nbinit into bin/
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/netbootd ./cmd/netbootctl
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/nbinit

.PHONY: run
run: deps build ## Run netbootd on the example config (loopback only, no DHCP)
	$(BIN)/netbootd --config images/example/netbootd.yaml

.PHONY: test
test: deps ## Run every test (unit, fuzz seeds, integration with real peers: Ceph, QEMU, DHCP/TFTP clients)
	NETBOOT_REQUIRE_ALL=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v /test/e2e)

.PHONY: test-short
test-short: ## Unit tests only (no root, no peers)
	$(GO) test -short ./...

.PHONY: e2e
e2e: deps ## The end-to-end VM suite (diskless VM onto its Ceph RBD root, reset, back)
	NETBOOT_REQUIRE_ALL=1 NETBOOT_E2E=1 $(GO) test -count=1 -timeout 30m -v ./test/e2e/...

.PHONY: bench
bench: deps ## Benchmarks against peers in the same run (TFTP vs tftp-hpa/dnsmasq, netconsole, RBD hand-over, initramfs)
	NETBOOT_REQUIRE_ALL=1 NETBOOT_BENCH=1 $(GO) test -p 1 -count=1 -timeout 90m -run '^$$' -bench . -benchtime 1x ./...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 10s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-10s} $$pkg || exit 1; \
	  done; \
	done

.PHONY: lint
lint: ## gofmt, go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

.PHONY: clean
clean: ## Remove build output and the example's database
	rm -rf $(BIN) var
