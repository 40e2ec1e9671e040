# kube-reloader: the two commands a developer needs are `make test` and `make demo`
# (see README.md). Everything they need is built here; the Go control-plane binaries are
# cached outside the repository (testbins/build.sh), so only the first run is slow.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: bench test demo prerequisites check unit testbins integration no-leftovers cluster build chart-test manifests image install-plugin

## test: every check and test: fmt, clippy, unit tests, control-plane binaries, chart checks,
## integration tests, the container image and its test.
test: prerequisites check unit testbins chart-test integration image no-leftovers
	@echo "make test: all checks and tests passed"

## demo: a local control plane, kube-reloader, and a ConfigMap change rolling a Deployment.
demo: prerequisites testbins
	scripts/demo.sh
	@scripts/check-no-leftovers.sh

prerequisites:
	@scripts/prerequisites.sh

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --lib --bins --locked

## testbins: build (or find cached) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm.
testbins:
	testbins/build.sh

# The test binary is compiled before any control plane starts, so rustc and kube-apiserver do
# not fight over the two cores.
integration: testbins
	$(CARGO) test --locked --test integration --no-run
	KUBE_RELOADER_TESTBINS="$$(testbins/build.sh --print-dir)" $(CARGO) test --locked --test integration

no-leftovers:
	@scripts/check-no-leftovers.sh

## cluster: a local tier-C control plane for humans; prints KUBECONFIG; Ctrl-C stops it.
cluster: testbins
	$(CARGO) build --locked -p kube-reloader-testenv --bin kube-reloader-cluster
	KUBE_RELOADER_TESTBINS="$$(testbins/build.sh --print-dir)" target/debug/kube-reloader-cluster $(if $(KUBECONFIG_OUT),--kubeconfig-out $(KUBECONFIG_OUT))

## bench: memory, fan-out, latency and API load on a real control plane, written to
## docs/BENCHMARKS.md, docs/bench/results.json and docs/bench/*.png. PEER=path/to/stakater-reloader
## measures that controller side by side; BENCH_POINTS=quick is a smoke run (default full).
bench: prerequisites testbins
	$(if $(PEER),PEER="$(PEER)") $(if $(BENCH_POINTS),BENCH_POINTS="$(BENCH_POINTS)") scripts/bench.sh

## build: the release binary at target/release/kube-reloader.
build:
	$(CARGO) build --locked --release --bin kube-reloader

## install-plugin: build the binary and link it as kubectl-reloader into PLUGIN_DIR (default
## ~/.local/bin, which must be on PATH), so `kubectl reloader explain deploy/x` works.
PLUGIN_DIR ?= $(HOME)/.local/bin
install-plugin: build
	mkdir -p "$(PLUGIN_DIR)"
	ln -sf "$(CURDIR)/target/release/kube-reloader" "$(PLUGIN_DIR)/kubectl-reloader"
	@echo "installed $(PLUGIN_DIR)/kubectl-reloader; try: kubectl reloader explain deploy/<name> -n <namespace>"

## chart-test: helm lint/template of the chart for every value set, schema rejections, manifest drift.
chart-test: testbins
	scripts/chart-test.sh

## manifests: regenerate deploy/manifests and deploy/kustomize from the chart.
manifests: testbins
	scripts/render-manifests.sh


## image: the static binary and an OCI image layout in target/image/, built without a container
## engine (scripts/build-image.sh), then checked by tests/image.rs.
image:
	scripts/build-image.sh
	$(CARGO) test --locked --test image
