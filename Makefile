# Retain: every target loops over the modules listed in go.work.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

MODULES := $(shell go work edit -json | sed -n 's/.*"DiskPath": "\(.*\)".*/\1/p')
BIN := $(CURDIR)/.bin
export GOBIN := $(BIN)
export PATH := $(BIN):$(PATH)

# Pinned code generators, built from Go modules (works offline from the module proxy).
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: demo
demo: ## Run the whole system on embedded defaults with a sample shop, print the report
	go run ./cmd/retain dev --demo

.PHONY: test
test: ## Run every test (real NATS, real Postgres started on demand)
	@scripts/ensure-postgres.sh
	@scripts/test.sh

.PHONY: lint
lint: tools ## gofmt, go vet, go mod tidy, buf lint, buf breaking, generated-code drift
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do echo "== vet $$m"; (cd $$m && go vet ./...); done
	@for m in $(MODULES); do (cd $$m && go mod tidy -diff >/dev/null) || { echo "$$m: go.mod/go.sum not tidy: run 'go mod tidy' there and commit"; exit 1; }; done
	cd proto && buf lint
	scripts/buf-breaking.sh
	$(MAKE) proto
	@git diff --exit-code -- proto/gen || { echo "generated code is out of date: run 'make proto' and commit"; exit 1; }
	$(MAKE) chart-lint

.PHONY: proto
proto: tools ## Regenerate Go code from proto/
	rm -rf proto/gen/go/retain
	cd proto && buf generate

.PHONY: bench
bench: ## Run the benchmark scenarios; figures are recorded in docs/benchmarks.md
	@scripts/ensure-postgres.sh
	@scripts/bench.sh

.PHONY: tools
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

$(BIN)/buf:
	go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

.PHONY: proto-baseline
proto-baseline: tools ## Record the current contracts as the baseline buf breaking checks against
	cd proto && buf build -o baseline.binpb

# --- Deployment: container images and the Helm chart --------------------------

HELM_VERSION := v3.22.0
HELM := $(BIN)/helm-$(HELM_VERSION)/helm
# Kubernetes version the chart is linted and rendered for (the chart needs >= 1.27).
CHART_KUBE_VERSION := 1.33.0
IMAGE_REGISTRY ?= ghcr.io/retainhq
IMAGE_TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Every service with a command: services/<name>/cmd/<name>.
IMAGE_SERVICES := $(sort $(notdir $(wildcard services/*/cmd/*)))

.PHONY: images
images: ## Build the image of every service and of the retain command (needs a Docker engine)
	@command -v docker >/dev/null 2>&1 || { echo "make images: the docker command is not installed; build the images where Docker runs"; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make images: no Docker engine is reachable ('docker info' fails: start the daemon or set DOCKER_HOST); nothing was built"; exit 1; }
	@for s in $(IMAGE_SERVICES) retain; do \
	  if [ "$$s" = retain ]; then img=$(IMAGE_REGISTRY)/retain:$(IMAGE_TAG); else img=$(IMAGE_REGISTRY)/retain-$$s:$(IMAGE_TAG); fi; \
	  echo "== docker build $$img"; \
	  DOCKER_BUILDKIT=1 docker build -f deploy/Dockerfile -t "$$img" \
	    --build-arg SERVICE="$$s" --build-arg VERSION="$(IMAGE_TAG)" \
	    --build-arg REVISION="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
	    --build-arg CREATED="$$(date -u +%Y-%m-%dT%H:%M:%SZ)" . || exit 1; \
	done

.PHONY: chart-lint
chart-lint: $(HELM) ## helm lint --strict and helm template of charts/retain with each values file (offline)
	@deploy/chart-lint.sh $(HELM) $(CHART_KUBE_VERSION)

# Helm built from its Go module at a pinned version, stamped like a release build.
$(HELM):
	GOBIN=$(dir $(HELM)) go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
