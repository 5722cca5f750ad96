# The verbs users type. README.md lists them; each either works or says plainly that
# its feature has not landed yet (exit 2) — never a fake success.

CARGO ?= cargo
SCENARIO ?=
SEEDS ?= 50
BACKEND ?= sim
PARALLEL ?= 2

.PHONY: help build test ci fmt fmt-check lint generate generate-check chaos-list chaos-run \
        chaos-run-all chaos-recover chaos-sweep report test-integration test-contract docs-build playground-sim bench \
        images image-operator image-counter-app image-dashboard image-dns-webhook

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

ci: generate-check fmt-check lint docs-build test-integration test-contract test ## What CI runs: generated files current, formatted, lint-clean, the book builds, adapters against real servers, all tests (last, so its summary closes the run)

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check: ## Fail if the code is not formatted
	$(CARGO) fmt --all -- --check

lint: ## Clippy on everything and shellcheck on every shell script; any warning fails
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@command -v shellcheck >/dev/null 2>&1 || { echo "lint: shellcheck is not installed (apt-get install shellcheck)"; exit 1; }
	shellcheck .ci/run $$(git ls-files '*.sh')

# One build of every crate and target with the workspace's unified features: the
# generators, the contract test and `make test` all reuse it. (`cargo run -p bloodraven`
# would resolve features for that package alone and build most dependencies a second
# time: about 13 minutes of a fresh CI run on two cores.)
BLOODRAVEN = target/debug/bloodraven

generate: build ## Regenerate the chart's CRDs and operator RBAC from the Rust code
	$(BLOODRAVEN) crd > charts/bloodraven/crds/bloodraven-crds.yaml
	$(BLOODRAVEN) rbac > charts/bloodraven/templates/rbac.yaml

generate-check: build ## Fail if the committed CRDs or RBAC template differ from the Rust code
	@mkdir -p target && $(BLOODRAVEN) crd > target/crds-check.yaml
	@diff -u charts/bloodraven/crds/bloodraven-crds.yaml target/crds-check.yaml \
	  || { echo "charts/bloodraven/crds/bloodraven-crds.yaml is stale: run 'make generate' and commit it"; exit 1; }
	@$(BLOODRAVEN) rbac > target/rbac-check.yaml
	@diff -u charts/bloodraven/templates/rbac.yaml target/rbac-check.yaml \
	  || { echo "charts/bloodraven/templates/rbac.yaml is stale: run 'make generate' and commit it"; exit 1; }
	@echo "generate-check: CRDs and RBAC are current"

CHAOS = $(CARGO) run --quiet -p bloodraven-chaos --
# The sweep and the report simulate hours: they build the workspace crates at opt-level 1
# as well (dependencies are at 2 in every dev build; see Cargo.toml). Same target/debug,
# same dependency artifacts: only the three workspace crates build a second time, once,
# and cargo keeps both builds side by side. docs/scenarios.md has the measurements.
CHAOS_OPT = CARGO_PROFILE_DEV_OPT_LEVEL=1 $(CHAOS)

chaos-list: ## List the chaos scenarios
	$(CHAOS) list

chaos-run: ## Run one scenario: make chaos-run SCENARIO=02-kill-site-iad [BACKEND=sim|k3d] [SEED=N]
	@test -n "$(SCENARIO)" || { echo "usage: make chaos-run SCENARIO=<id or path> [BACKEND=sim|k3d] [SEED=N]"; exit 2; }
	$(CHAOS) run $(SCENARIO) --backend $(BACKEND) $(if $(SEED),--seed $(SEED)) --junit reports/junit.xml --report-dir reports

chaos-run-all: ## Run every scenario and write JUnit to reports/ (prints the wall time)
	@start=$$(date +%s.%N); \
	$(CHAOS) run-all --backend $(BACKEND) --parallel $(PARALLEL) --junit reports/junit.xml --report-dir reports; \
	status=$$?; \
	echo "chaos-run-all: $$(awk "BEGIN {printf \"%.1f\", $$(date +%s.%N) - $$start}") s wall ($(PARALLEL) parallel, $$(nproc) CPUs)"; \
	exit $$status

chaos-recover: ## Undo every fault recorded in the last run's ledger (after a runner crash)
	$(CHAOS) recover

chaos-sweep: ## Random fault schedules over many seeds: make chaos-sweep SEEDS=200 [FIRST=1]
	$(CHAOS_OPT) sweep --seeds $(SEEDS) --first $(or $(FIRST),1) --parallel $(PARALLEL) --report-dir reports

bench: ## Run the performance and scale benchmarks (release, simulation); write docs/bench.md: make bench [SEED=1] [BENCH_GROUPS="1 10 100"] [BENCH_PROFILE=release]
	CARGO=$(CARGO) BENCH_PROFILE=$(or $(BENCH_PROFILE),release) SEED=$(or $(SEED),1) BENCH_GROUPS="$(or $(BENCH_GROUPS),1 10 100)" sh component-tests/bench/bench.sh

report: ## Run the sim suite and a sweep; write docs/report.md: make report [SEEDS=50]
	$(CHAOS_OPT) report --sweep-seeds $(SEEDS) --parallel $(PARALLEL) --out docs/report.md --report-dir reports

playground-sim: ## The simulated playground in real time, for kubectl (no Docker): make playground-sim [SEED=1] [PORT=6443]
	$(CARGO) run --quiet -p bloodraven-sim -- serve --port $(or $(PORT),6443) --seed $(or $(SEED),1) --kubeconfig bloodraven-sim.kubeconfig \
	  --bloodraven --operator-namespace bloodraven-playground --apply examples/playground.yaml --apply examples/playground-minio.yaml --apply examples/playground-dns.yaml \
	  --apply examples/playground-apps.yaml --expose bloodraven-playground/dashboard:8091 --expose bloodraven-playground/counter-app:8090

# The integration tier (crate integration/): its tests are #[ignore]d in `make test` and
# run here, each against a real server it starts itself (S3: moto's server, from
# `pip install 'moto[server]'`; MySQL: mariadbd, from `apt-get install mariadb-server`;
# Redis: redis-server; podman for the k3d backend's Docker half). A server that cannot
# start fails the test. docs/backups.md, docs/testing.md.
test-integration: ## Adapters against real servers started by the harness (S3 via moto, MariaDB, Redis, podman)
	@start=$$(date +%s); \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --run-ignored only -E 'package(bloodraven-integration)' --no-fail-fast; \
	else \
	  $(CARGO) test -p bloodraven-integration -- --ignored; \
	fi; \
	status=$$?; echo "test-integration: $$(( $$(date +%s) - start )) s wall"; exit $$status

test-contract: build ## The dns-webhook against its OpenAPI contract with schemathesis (MAX_TIME=30 seconds of generated cases)
	MAX_TIME=$${MAX_TIME:-30} playground/dns-webhook/check-contract.sh

docs-build: ## Build the mdBook under docs/ into docs/book
	@command -v mdbook >/dev/null 2>&1 || { echo "docs-build: mdbook is not installed (cargo install mdbook --locked)"; exit 1; }
	mdbook build docs

# Container images (images/Containerfile.*): multi-stage, non-root, base images as build
# arguments (RUST_IMAGE, RUNTIME_IMAGE; pass more with IMAGE_BUILD_ARGS="--build-arg
# RUNTIME_IMAGE=..."). docker, or podman when docker is absent or
# BLOODRAVEN_CONTAINER_RUNTIME=podman. docs/playground.md, "Images".
CONTAINER_RUNTIME ?= $(or $(BLOODRAVEN_CONTAINER_RUNTIME),$(shell command -v docker >/dev/null 2>&1 && echo docker || echo podman))
IMAGE_TAG ?= dev
IMAGE_BUILD_ARGS ?=
IMAGE_REPO_operator = ghcr.io/shipstream/bloodraven
IMAGE_REPO_counter-app = ghcr.io/shipstream/bloodraven-counter-app
IMAGE_REPO_dashboard = ghcr.io/shipstream/bloodraven-dashboard
IMAGE_REPO_dns-webhook = ghcr.io/shipstream/bloodraven-dns-webhook

images: image-operator image-counter-app image-dashboard image-dns-webhook ## Build the operator (with sidecar), counter-app, dashboard and dns-webhook images: make images [IMAGE_TAG=dev] [CONTAINER_RUNTIME=podman]

build_image = $(CONTAINER_RUNTIME) build -f images/Containerfile.$(1) -t $(IMAGE_REPO_$(1)):$(IMAGE_TAG) $(IMAGE_BUILD_ARGS) .

image-operator: ## Build the operator image (also the sidecar and the backup Jobs)
	$(call build_image,operator)
image-counter-app: ## Build the counter-app image
	$(call build_image,counter-app)
image-dashboard: ## Build the dashboard image
	$(call build_image,dashboard)
image-dns-webhook: ## Build the dns-webhook image
	$(call build_image,dns-webhook)
