# edge-agent build, test and release entry points. Each target is what CI
# and the README name; the scripts behind them live in cross/ and packaging/.
GO        ?= go
PKG       := github.com/edge-agent/edge-agent
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The commit's date: a device clock before it is certainly wrong (agent.ClockFloor).
BUILD_DATE ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS   := -X $(PKG)/agent.Version=$(VERSION) -X $(PKG)/agent.Commit=$(COMMIT) -X $(PKG)/agent.BuildDate=$(BUILD_DATE)
BIN       := bin/edge-agent
# go test flags for `make test`; CI keeps -race on.
TESTFLAGS ?= -race -timeout 20m

.PHONY: check-monitoring build run test lint bench cross test-arm deb test-deb test-deb-arm test-systemd chaos fuzz fleet-sim clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./agent/cmd/edge-agent

# A development hub and an agent with simulated sensors, in one process.
run: build
	./$(BIN) demo

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

test: lint
	$(GO) test $(TESTFLAGS) ./...

# The shipped alert rules: syntax, and each alert's own unit test. promtool
# is Debian's `prometheus` package. That every metric they and the
# dashboards name exists is TestMonitoringNamesRealMetrics in make test.
check-monitoring:
	promtool check rules packaging/prometheus/edge-agent.rules.yml
	cd packaging/prometheus && promtool test rules edge-agent.rules.test.yml

# Every figure in docs/BENCHMARKS.md comes from this run; BENCH narrows it.
BENCH ?= .
bench: cross
	$(GO) run ./agent/internal/benchreport -out docs/BENCHMARKS.md -bench '$(BENCH)' -dist dist

cross:
	bash cross/build.sh

test-arm:
	bash cross/test-arm.sh

deb:
	bash packaging/build-deb.sh

test-deb:
	bash packaging/test-deb.sh

test-deb-arm:
	bash packaging/test-deb-arm.sh

test-systemd:
	bash systemd/test.sh

# Fault injection against the built binary (agent/internal/chaos); QUICK=1
# is the CI-sized run (under 5 minutes), CHAOSFLAGS narrows or extends it.
QUICK      ?=
CHAOSFLAGS ?=
chaos:
	$(GO) run ./agent/internal/chaos $(if $(QUICK),-quick) $(CHAOSFLAGS)

# Every fuzz target in the repository, FUZZTIME each (go test -fuzz takes one
# target and one package at a time). A failure that recorded no crashing
# input under testdata/fuzz is Go's fuzz coordinator missing its own deadline
# at the end of -fuzztime ("context deadline exceeded"), not a finding: that
# target is run once more. A real finding always leaves its input there.
FUZZTIME ?= 10s
fuzz:
	@set -e; for pkg in ./agent ./sensors ./uplink; do \
	  list=$$($(GO) test -list '^Fuzz' $$pkg); \
	  for f in $$(echo "$$list" | grep '^Fuzz'); do \
	    echo "== fuzz $$pkg $$f for $(FUZZTIME)"; \
	    before=$$(ls $$pkg/testdata/fuzz/$$f 2>/dev/null | wc -l); \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || { \
	      test "$$(ls $$pkg/testdata/fuzz/$$f 2>/dev/null | wc -l)" = "$$before" || exit 1; \
	      echo "== fuzz $$pkg $$f: failed without a crashing input (fuzz engine deadline); once more"; \
	      $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; }; \
	  done; \
	done

# Reconnect herd: FLEET_N agents with a backlog against a hub (child
# process) restarted on the same ports; agent policy vs stock leaf settings.
FLEET_N ?= 100
fleet-sim:
	FLEET_N=$(FLEET_N) $(GO) run ./agent/internal/fleetsim $(FLEETFLAGS)

clean:
	rm -rf bin dist
