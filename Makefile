# picockpit-client. `make help` lists the targets.
SHELL      := /bin/bash
GO         ?= go
# The package version from debian/changelog's first line, e.g. 0.1.0-1.
VERSION    ?= $(shell sed -n '1{s/^[^ ]* .//;s/. .*//;p;}' debian/changelog 2>/dev/null)
LDFLAGS    := -s -w -X main.version=$(VERSION)
BUILDFLAGS := -trimpath -ldflags "$(LDFLAGS)"
FUZZTIME   ?= 5s
BENCHTIME  ?= 1s
PKGS       := ./...

.PHONY: help build test test-go fuzz vet lint demo bench cross deb repo test-deb test-nodered deps clean

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

test: deps vet test-go fuzz ## the test command: vet, go test -race ./..., each fuzz target for FUZZTIME

test-go:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

fuzz: ## run every Fuzz target for FUZZTIME (default 5s) on top of its committed corpus
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for t in $$(grep -h '^func Fuzz' $$f/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$f $$t ($(FUZZTIME))"; \
			$(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$f || exit 1; \
		done; \
	done

demo: deps ## run the agent against a throwaway local Mosquitto with fake hardware; Ctrl-C ends it
	$(GO) run ./cmd/picockpit-demo

bench: deps ## benchmarks (figures go to docs/performance.md)
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) $(PKGS)

cross: ## static binaries for armhf (GOARM=6), arm64, amd64 in dist/
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build $(BUILDFLAGS) -o dist/linux_armhf/picockpit-client ./cmd/picockpit-client
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build $(BUILDFLAGS) -o dist/linux_arm64/picockpit-client ./cmd/picockpit-client
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build $(BUILDFLAGS) -o dist/linux_amd64/picockpit-client ./cmd/picockpit-client
	@ls -l dist/linux_*/picockpit-client

deb: ## the three .deb packages in dist/
	VERSION=$(VERSION) debian/build-deb.sh

repo: deb ## a signed apt repository in dist/repo (throwaway key unless SIGNING_KEY_ID is set)
	VERSION=$(VERSION) debian/build-repo.sh

test-deb: ## install the package into a debootstrapped Debian 12 from the signed repo (root)
	debian/test-deb.sh

NODE_RED_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/picockpit-client/node-red
test-nodered: deps ## the shipped Node-RED flow in a real Node-RED 4 + Dashboard 2 against a real broker and two agents, driven in headless Chromium
	@missing=; command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium chromium-driver"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	mkdir -p $(NODE_RED_DIR)
	cd $(NODE_RED_DIR) && [ -x node_modules/.bin/node-red ] || npm install --no-audit --no-fund --loglevel=error node-red@4.1.8 @flowfuse/node-red-dashboard@1.31.0
	NODE_RED_DIR=$(NODE_RED_DIR) $(GO) test -tags nodered -run TestNodeRedFlow -count=1 ./modules/kinds/

clean: ## remove build output
	rm -rf bin dist
