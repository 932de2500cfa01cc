# picockpit-client. `make help` lists the targets.
SHELL      := /bin/bash
GO         ?= go
# The upstream version: debian/changelog's top entry without the Debian
# revision (0.1.0-1 gives 0.1.0), what the binary and the package report.
VERSION    ?= $(shell . debian/lib.sh && v=$$(changelog_field Version) && echo "$${v%-*}")
COMMIT     ?= $(shell . debian/lib.sh && source_commit)
LDFLAGS    := -s -w -X main.versionOverride=$(VERSION) -X main.commitOverride=$(COMMIT)
BUILDFLAGS := -trimpath -ldflags "$(LDFLAGS)"
# Executions per fuzz target (a count, not a time: a loaded machine must
# not shrink the run to nothing).
FUZZTIME   ?= 2000x
BENCHTIME  ?= 1s
PKGS       := ./...
# go test -json of every run of `make test` (and test-nodered) goes here;
# .ci/testsummary.go prints per-package results and the totals from it.
TEST_RESULTS ?= bin/test-results
SUMMARY    := bin/testsummary

.PHONY: help build test test-go fuzz stress vet lint demo bench bench-floor cross deb repo test-deb test-nodered deps clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

build: ## build bin/picockpit-client for this machine (static, CGO_ENABLED=0)
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -o bin/picockpit-client ./cmd/picockpit-client

deps: ## install what the tests and the demo need (mosquitto, mosquitto-clients, gcc for -race, nodejs for the flow tests) if missing
	@missing=; \
	{ command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing="$$missing mosquitto"; \
	command -v mosquitto_sub >/dev/null || missing="$$missing mosquitto-clients"; \
	command -v gcc >/dev/null || missing="$$missing gcc libc6-dev"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

vet: ## go vet
	$(GO) vet $(PKGS)

lint: vet ## gofmt check, go vet, staticcheck when installed
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@if command -v staticcheck >/dev/null; then staticcheck $(PKGS); else echo "staticcheck not installed; skipped"; fi

$(SUMMARY): .ci/testsummary.go
	$(GO) build -o $@ .ci/testsummary.go

test: deps vet $(SUMMARY) ## the test command: vet, go test -race ./..., each fuzz target FUZZTIME executions; ends with "N passed, N failed, N skipped"
	@rm -rf $(TEST_RESULTS) && mkdir -p $(TEST_RESULTS)
	@rc=0; $(MAKE) --no-print-directory test-go || rc=1; $(MAKE) --no-print-directory fuzz || rc=1; \
	$(SUMMARY) -total $(TEST_RESULTS)/*.json || rc=1; exit $$rc

test-go: $(SUMMARY)
	@mkdir -p $(TEST_RESULTS)
	set -o pipefail; $(GO) test -race -count=1 -timeout 20m -json $(PKGS) | $(SUMMARY) -totals=false -save $(TEST_RESULTS)/go.json

fuzz: $(SUMMARY) ## run every Fuzz target FUZZTIME times (default 2000x) on top of its committed corpus
	@mkdir -p $(TEST_RESULTS)
	@set -eo pipefail; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for t in $$(grep -h '^func Fuzz' $$f/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$f $$t ($(FUZZTIME))"; \
			$(GO) test -json -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$f | \
				$(SUMMARY) -totals=false -save $(TEST_RESULTS)/fuzz-$$(basename $$f)-$$t.json || exit 1; \
		done; \
	done

# Packages whose tests start brokers run STRESS_BROKER_RUNS chunks of
# -count=STRESS_CHUNK; the others -count=STRESS_COUNT at once.
STRESS_COUNT       ?= 20
STRESS_CHUNK       ?= 10
STRESS_BROKER_RUNS ?= 2
stress: deps ## every package under -race -count=20 (those that start brokers in chunks of 10; STRESS_BROKER_RUNS=5 for 50); STRESS_PKGS=./agent/ for one
	@failed=; for p in $$($(GO) list $(or $(STRESS_PKGS),$(PKGS))); do \
		if $(GO) list -f '{{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}' $$p | grep -q '/agent/brokertest'; then \
			for i in $$(seq $(STRESS_BROKER_RUNS)); do \
				echo "stress $$p: chunk $$i/$(STRESS_BROKER_RUNS), -count=$(STRESS_CHUNK)"; \
				$(GO) test -race -count=$(STRESS_CHUNK) -timeout 60m $$p || failed="$$failed $$p"; \
			done; \
		else \
			echo "stress $$p: -count=$(STRESS_COUNT)"; \
			$(GO) test -race -count=$(STRESS_COUNT) -timeout 60m $$p || failed="$$failed $$p"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "stress FAILED:$$failed"; exit 1; fi; echo "stress: all passed"

demo: deps ## the agent on a throwaway local Mosquitto with fake hardware, in a live view; q ends it (DEMO_FLAGS=-raw: the raw topic tree)
	$(GO) run ./cmd/picockpit-demo $(DEMO_FLAGS)

bench: deps ## benchmarks (figures go to docs/performance.md)
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) $(PKGS)

FLOOR_N ?= 300
bench-floor: deps ## the agent against the floor in one run: FLOOR_N interleaved requests per case (docs/performance.md)
	$(GO) test -run='^$$' -bench='^BenchmarkFloor$$' -benchtime=$(FLOOR_N)x -timeout 60m ./modules/kinds/floorbench/

cross: ## static binaries for armhf (GOARM=6), arm64, amd64 in dist/
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build $(BUILDFLAGS) -o dist/linux_armhf/picockpit-client ./cmd/picockpit-client
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build $(BUILDFLAGS) -o dist/linux_arm64/picockpit-client ./cmd/picockpit-client
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build $(BUILDFLAGS) -o dist/linux_amd64/picockpit-client ./cmd/picockpit-client
	@ls -l dist/linux_*/picockpit-client

deb: ## the three .deb packages in dist/ (version from debian/changelog)
	VERSION=$(VERSION) COMMIT=$(COMMIT) debian/build-deb.sh

repo: deb ## a signed apt repository in dist/repo (throwaway key unless SIGNING_KEY_ID is set)
	VERSION=$(VERSION) debian/build-repo.sh

test-deb: ## install the package into a debootstrapped Debian 12 from the signed repo (root)
	debian/test-deb.sh

NODE_RED_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/picockpit-client/node-red
test-nodered: deps $(SUMMARY) ## the shipped Node-RED flow in a real Node-RED 4 + Dashboard 2 against a real broker and two agents, driven in headless Chromium
	@missing=; command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium chromium-driver"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	mkdir -p $(NODE_RED_DIR)
	cd $(NODE_RED_DIR) && [ -x node_modules/.bin/node-red ] || npm install --no-audit --no-fund --loglevel=error node-red@4.1.8 @flowfuse/node-red-dashboard@1.31.0
	@mkdir -p $(TEST_RESULTS)
	set -o pipefail; NODE_RED_DIR=$(NODE_RED_DIR) $(GO) test -json -tags nodered -run 'TestNodeRed' -count=1 ./modules/kinds/ | \
		$(SUMMARY) -totals=false -save $(TEST_RESULTS)/nodered.json

clean: ## remove build output
	rm -rf bin dist
