# The verbs users type. README.md lists them; each either works or says plainly that
# its feature has not landed yet (exit 2) — never a fake success.

CARGO ?= cargo
SCENARIO ?=
SEEDS ?= 50
BACKEND ?= sim

.PHONY: help build test ci fmt fmt-check lint generate generate-check chaos-list chaos-run \
        chaos-run-all chaos-sweep test-integration docs-build

help: ## Show the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-18s %s\n", $$1, $$2}'

build: ## Build every crate and binary
	$(CARGO) build --workspace --all-targets

test: ## Run every test (unit, component, envtest, sim scenarios)
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

ci: generate-check fmt-check lint test ## What CI runs: generated files current, formatted, lint-clean, tests pass

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check: ## Fail if the code is not formatted
	$(CARGO) fmt --all -- --check

lint: ## Clippy on everything; any warning fails
	$(CARGO) clippy --workspace --all-targets -- -D warnings

generate: ## Regenerate the CRD YAML in charts/bloodraven/crds/
	$(CARGO) run --quiet -p bloodraven -- crd > charts/bloodraven/crds/bloodraven-crds.yaml

generate-check: ## Fail if the committed CRD YAML differs from the Rust types
	@$(CARGO) run --quiet -p bloodraven -- crd > target/crds-check.yaml
	@diff -u charts/bloodraven/crds/bloodraven-crds.yaml target/crds-check.yaml \
	  || { echo "charts/bloodraven/crds/bloodraven-crds.yaml is stale: run 'make generate' and commit it"; exit 1; }
	@echo "generate-check: CRDs are current"

chaos-list: ## List the chaos scenarios
	@echo "chaos-list: not implemented yet (the chaos runner has not landed)"; exit 2

chaos-run: ## Run one scenario: make chaos-run SCENARIO=02-kill-site-iad [BACKEND=sim|k3d]
	@echo "chaos-run: not implemented yet (the chaos runner has not landed)"; exit 2

chaos-run-all: ## Run every scenario and write JUnit to reports/
	@echo "chaos-run-all: not implemented yet (the chaos runner has not landed)"; exit 2

chaos-sweep: ## Random fault schedules over many seeds: make chaos-sweep SEEDS=200
	@echo "chaos-sweep: not implemented yet (the seed sweep has not landed)"; exit 2

test-integration: ## Adapters against real servers started by the harness
	@echo "test-integration: not implemented yet (the adapters have not landed)"; exit 2

docs-build: ## Build the mdBook under docs/ into docs/book
	@command -v mdbook >/dev/null 2>&1 || { echo "docs-build: mdbook is not installed (cargo install mdbook --locked)"; exit 1; }
	mdbook build docs
