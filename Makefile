# Switchyard's build, test and tool entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
GO ?= go
CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/switchyard
TOOLS := $(CACHE)/tools
STATICCHECK_VERSION := v0.6.1
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)/staticcheck
HELM_VERSION := v3.17.3
HELM := $(TOOLS)/helm-$(HELM_VERSION)/helm
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The one build command: the Dockerfile runs `make build` too, so CI exercises the image's exact flags.
BUILD_FLAGS := -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
BIN ?= bin/switchyard

INFRA := test/infra/infra.sh
INFRA_ENV := SWITCHYARD_TEST_KAFKA=127.0.0.1:$${KAFKA_PORT:-9092} SWITCHYARD_TEST_CASSANDRA=127.0.0.1:$${CASSANDRA_PORT:-9042} \
  SWITCHYARD_TEST_KAFKA_SECURE=127.0.0.1:$${KAFKA_SECURE_PORT:-9094} \
  SWITCHYARD_TEST_KAFKA_CA=$${SWITCHYARD_INFRA_DIR:-$${TMPDIR:-/tmp}/switchyard-infra}/kafka/tls/ca.pem

.PHONY: soak build test unit lint tools image release image-tools browser screenshots infra-up infra-down demo fuzz bench bench-tools clean chart-golden

build:
	CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS) -o $(BIN) ./cmd/switchyard

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Helm builds from the module proxy (about 3 minutes, once); cached outside the clone.
$(HELM):
	GOBIN=$(dir $@) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

tools: $(STATICCHECK) $(HELM)

# The OCI image, without a container engine: an OCI layout in bin/image tagged $(VERSION) (see
# docs/kubernetes.md for pushing it: skopeo copy oci:bin/image:TAG docker://REGISTRY/switchyard:TAG).
IMAGE_DIR ?= bin/image
image: build
	cd test/deploy && $(GO) run ./cmd/switchyard-image -out $(CURDIR)/$(IMAGE_DIR) -binary $(CURDIR)/$(BIN) -license $(CURDIR)/LICENSE -version $(VERSION)

# A release, in dist/: the binary built with VERSION (what --version says), its OCI image as make
# image builds it, an SPDX SBOM read from the binary's own build information, and SHA256SUMS. With
# REGISTRY=host/path the image is pushed there, tagged VERSION without its v (the chart's
# appVersion form: v0.1.0 is 0.1.0), and latest with LATEST=1; credentials are docker login's or
# REGISTRY_USERNAME/REGISTRY_PASSWORD. Without REGISTRY it builds and stops before pushing.
DIST ?= dist
REGISTRY ?=
release:
	$(MAKE) build VERSION=$(VERSION) BIN=bin/release/switchyard
	cd test/deploy && $(GO) run ./cmd/switchyard-release -dist $(abspath $(DIST)) -binary $(CURDIR)/bin/release/switchyard \
	  -license $(CURDIR)/LICENSE -version $(VERSION) -arch $$($(GO) env GOARCH) $(if $(REGISTRY),-registry $(REGISTRY)) $(if $(LATEST),-latest)

# Debian's umoci and runc, with which make test unpacks the image and runs it.
image-tools:
	@command -v umoci >/dev/null && command -v runc >/dev/null || \
	  { apt-get install -y --no-install-recommends umoci runc >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y --no-install-recommends umoci runc >/dev/null; }; }

# Debian's Chromium, in which make test drives the web console (test/console).
browser:
	@command -v chromium >/dev/null || \
	  { apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y --no-install-recommends chromium >/dev/null; }; }

# The console's screenshots in docs/console/, taken by the browser test as it walks the pages.
screenshots: build browser
	cd test/console && SWITCHYARD_REQUIRE_BROWSER=1 SWITCHYARD_BIN=$(CURDIR)/$(BIN) SWITCHYARD_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 ./...

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	cd test/deploy && $(GO) vet ./... && $(STATICCHECK) ./...
	cd test/bench/tracecycles && $(GO) vet ./... && $(STATICCHECK) ./...
	cd test/console && $(GO) vet ./... && $(STATICCHECK) ./...

# The whole suite against real Kafka and Cassandra, started here and stopped even when tests fail,
# and a real kube-apiserver and etcd for controller mode (built once into the tool cache; envtest
# starts them); then the chart, Dockerfile and image checks: the image built as make image builds it,
# unpacked with umoci and run with runc (test/deploy is a module of its own: k8s.io/api and
# go-containerregistry stay out of the router's dependencies); then the web console in Debian's
# Chromium (test/console, a module of its own for chromedp).
test: lint build $(HELM) image-tools browser
	@assets=$$(test/infra/kube-tools.sh) || exit 1; \
	  $(INFRA) up || { $(INFRA) logs; $(INFRA) down; exit 1; }; \
	  status=0; $(INFRA_ENV) KUBEBUILDER_ASSETS=$$assets SWITCHYARD_BIN=$(CURDIR)/$(BIN) $(GO) test -race -shuffle=on -count=1 -timeout 20m ./... || status=$$?; \
	  $(INFRA) down; \
	  (cd test/deploy && HELM=$(HELM) SWITCHYARD_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 ./...) || status=$$?; \
	  (cd test/console && SWITCHYARD_REQUIRE_BROWSER=1 SWITCHYARD_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 ./...) || status=$$?; \
	  exit $$status

SOAK_SCALE ?= 10
SOAK_TESTS := TestKafkaBrokerSurvivesKill9|TestSlowSubscriberMemoryIsBounded|TestKafkaSourceResumesAfterKill|TestFaultsRandomized

# The load tests of the suite, SOAK_SCALE times larger and longer (not part of `make test`): 200,000
# events into a Kafka-class broker killed with SIGKILL halfway, 200,000 records through a KafkaSource
# killed mid-topic, 6.4 GB offered to a slow subscriber with the router's memory watched, and
# SOAK_SCALE rounds of randomly ordered faults (TestFaultsRandomized prints its seed;
# SWITCHYARD_FAULTS_SEED=N replays it). Everything on 127.0.0.1, bounded, self-stopping.
soak: build
	@$(INFRA) up || { $(INFRA) logs; $(INFRA) down; exit 1; }; \
	  status=0; $(INFRA_ENV) SWITCHYARD_SOAK_SCALE=$(SOAK_SCALE) SWITCHYARD_BIN=$(CURDIR)/$(BIN) \
	    $(GO) test -count=1 -v -timeout 90m -run '^($(SOAK_TESTS))$$' ./test/e2e || status=$$?; \
	  $(INFRA) down; exit $$status

# Re-render the chart's golden files after a deliberate chart change (review the diff).
chart-golden: build $(HELM)
	cd test/deploy && HELM=$(HELM) SWITCHYARD_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -run Golden ./... -update

# Fast feedback without the servers: integration tests skip (outside CI) with a hint.
unit:
	$(GO) test -race -count=1 ./...

# Runs Switchyard on the demo config with the demo function it delivers to; Ctrl-C stops both.
demo: build
	@$(BIN) function --addr 127.0.0.1:8081 & fn=$$!; trap "kill $$fn 2>/dev/null" EXIT INT TERM; \
	  echo "Send an event:  $(BIN) send http://127.0.0.1:8080/default/default --type com.example.order.created --source https://shop.example/web --data '{\"id\":1}' --ext amount=150"; \
	  echo "Watch it:       http://127.0.0.1:9090/ui/"; \
	  $(BIN) serve --config examples/demo.yaml

FUZZTIME ?= 15s
FUZZ_TARGETS := ./router/cehttp:FuzzDecode ./router/cehttp:FuzzBatchElements ./router/config:FuzzParse ./router/filter:FuzzCESQL ./sources/webhook:FuzzProviders ./router/ingress:FuzzFullPath

# Each fuzz target for FUZZTIME (not part of `make test`, which runs their seed corpora): CloudEvents
# decoding, config loading, CESQL, webhook verification and mapping, and raw HTTP request bytes
# through ingress, routing, delivery and recording.
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "== $$fn ($$pkg)"; $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; done

BENTHOS_VERSION := v4.27.0
BENTHOS := $(TOOLS)/benthos-$(BENTHOS_VERSION)/benthos

# Benthos, what a user might run instead of us, built in a wrapper module (its own go.mod carries a
# replace that `go install` refuses); about 90 s cold.
$(BENTHOS):
	mkdir -p $(dir $@)src && cp test/bench/benthos/main.go $(dir $@)src/main.go
	cd $(dir $@)src && { [ -f go.mod ] || $(GO) mod init benthoswrapper; } && \
	  $(GO) get github.com/benthosdev/benthos/v4@$(BENTHOS_VERSION) && \
	  $(GO) mod edit -replace github.com/99designs/keyring=github.com/Jeffail/keyring@v1.2.3 && \
	  $(GO) mod tidy && $(GO) build -tags benthoswrapper -o ../benthos .

# wrk and nginx come from Debian's packages.
bench-tools: $(BENTHOS)
	@command -v wrk >/dev/null && command -v nginx >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk nginx-light; } || \
	  echo "wrk or nginx missing: apt-get install wrk nginx-light"

# The side-by-side harness (docs/performance.md), with real Kafka and Cassandra for the durable
# scenarios, then the Go benchmarks of the hot paths. Not part of `make test`. Everything runs on
# 127.0.0.1 and stops by itself.
bench: build bench-tools
	$(GO) build -o bin/bench-harness ./test/bench/harness
	@was=$$($(INFRA) status | grep -c running || true); \
	  $(INFRA) up || { $(INFRA) logs; $(INFRA) down; exit 1; }; status=0; \
	  bin/bench-harness -switchyard $(BIN) -benthos $(BENTHOS) -kafka 127.0.0.1:$${KAFKA_PORT:-9092} \
	    -cassandra 127.0.0.1:$${CASSANDRA_PORT:-9042} -rounds 7 $(BENCH_ARGS) || status=$$?; \
	  [ "$$was" = 2 ] || $(INFRA) down; exit $$status # servers left running by make infra-up stay up
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./router/... ./test/bench/

infra-up:
	$(INFRA) up
	@echo "export $(INFRA_ENV) KUBEBUILDER_ASSETS=$$(test/infra/kube-tools.sh)"

infra-down:
	$(INFRA) down

clean:
	rm -rf bin
