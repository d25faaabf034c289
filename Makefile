# event_hooks: `make run` (the demo) and `make test` (every test) are all a new user needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/event_hooks.wasm
VENV := .venv
PYTHON := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
VENV_STAMP := $(VENV)/.installed
# The offline validator, built by plain `cargo build` (debug: no release build of Rhai needed).
CLI := target/debug/event-hooks
META := kong/event_hooks.meta.json

.PHONY: help build cli schema wasm-target envoy certs run test unit hosts e2e lint fmt clean \
	fuzz fuzz-check fuzz-tools soak docs

help:
	@echo "make run     build, then start Envoy with the filter and the demo receiver"
	@echo "make test    run every test (native unit tests, the wasmtime hosts, then end-to-end through Envoy)"
	@echo "make hosts   play the filter in the wasmtime test host, under Envoy's and Kong's rules"
	@echo "make build   build $(WASM)"
	@echo "make cli     build $(CLI) (event-hooks validate CONFIG.json, event-hooks schema)"
	@echo "make schema  regenerate $(META), the configuration's JSON Schema for Kong"
	@echo "make lint    cargo fmt --check and clippy (native and wasm32)"
	@echo "make envoy   install Envoy 1.40.0 and the test tools into $(VENV)/"
	@echo "make bench   measure the filter under Envoy with wrk, write BENCHMARKS.md (QUICK=1: short runs;"
	@echo "             BASELINE=REV: each filter row also with git revision REV's filter, same run)"
	@echo "make fuzz    run every fuzz target for FUZZ_SECONDS (default 600) each, one after the other"
	@echo "make fuzz-check  build the fuzz targets and run each on its seed corpus only"
	@echo "make soak    SOAK_SECONDS (default 600) of hostile traffic through Envoy with and without the filter"
	@echo "make docs    build the book (docs/, mdBook) into target/book"

wasm-target:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

build: wasm-target
	cargo build --release --target $(WASM_TARGET) -p event-hooks --lib
	@echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes)"

cli:
	cargo build -p event-hooks-cli --bin event-hooks

schema: cli
	$(CLI) schema --kong-meta > $(META).tmp
	mv $(META).tmp $(META)

envoy: $(VENV_STAMP)

$(VENV_STAMP): tests/requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $@

certs:
	@demo/certs.sh envoy/certs

run: build envoy certs
	$(PYTHON) demo/run.py

# The core, the adapter's pure parts and the command, natively; then again without `lambda`.
unit:
	cargo test
	cargo test --no-default-features   # the filter built without the lambda feature

# One worker per core (pytest-xdist; E2E_WORKERS=0: one test after the other). Each test starts
# its own Envoy and servers on ports the system gives them (tests/e2e/conftest.py), so tests run
# side by side; a test waits (Envoy starting, deliveries, the soak's 30 s) a third of its time.
# On 2 cores, 271 tests: 117 s instead of 207.
E2E_WORKERS ?= auto
e2e: build cli envoy certs
	$(VENV)/bin/pytest -q -n $(E2E_WORKERS) tests/e2e

# The filter in tests/host, a wasmtime proxy-wasm host playing Envoy's and Kong's (3.4 to 3.10)
# rules on a virtual clock: tests/scenarios/*.json and targeted tests. Profile `hosts`: no LTO,
# optimized only where the tests spend their time (see Cargo.toml).
hosts: build
	cargo test -p event-hooks-testhost --profile hosts --no-fail-fast

test: unit hosts e2e

lint: wasm-target
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) -p event-hooks -p event-hooks-core --lib -- -D warnings
	cargo clippy --all-targets --no-default-features -- -D warnings
	cargo clippy --target $(WASM_TARGET) -p event-hooks -p event-hooks-core --lib --no-default-features -- -D warnings
	cargo fmt --check -p event-hooks-testhost
	$(CLIPPY_BUILD) cargo build -p event-hooks-testhost --profile hosts --all-targets
	# The fuzz targets compile against today's core (stable, no sanitizer: ~50 s cold; a change
	# of the core's API once broke them unnoticed). `make fuzz-check` also runs their corpora.
	RUSTFLAGS="--cfg fuzzing" cargo check --manifest-path fuzz/Cargo.toml --bins --target-dir target/fuzz-check

# The test host is linted by clippy building it: RUSTC_WORKSPACE_WRAPPER is how `cargo clippy`
# puts clippy in rustc's place for the workspace's own crates, and `cargo clippy` would then only
# check them, after checking wasmtime and cranelift (about 80 CPU s) for nothing else. Built with
# the `hosts` profile, the dependencies are the ones `make hosts` uses (the test host's own crate,
# linted here, builds again there: about 20 CPU s). CLIPPY_ARGS is `cargo clippy -- ARGS`.
CLIPPY_BUILD = RUSTC_WORKSPACE_WRAPPER="$$(rustup which clippy-driver)" CLIPPY_ARGS=-Dwarnings

# Benchmarks (bench/run.py): Envoy and wrk on separate CPUs, 10 to 15 minutes; QUICK=1 for short
# runs while developing; BASELINE=REV measures every filter row also with the filter of git
# revision REV, in the same rounds (what a change costs, as a ratio from one run). Not part of
# `make test`. Installs wrk (apt) and matplotlib (.venv).
.PHONY: bench
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): bench/requirements.txt $(VENV_STAMP)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@touch $@

bench: build cli envoy $(BENCH_STAMP)
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else echo "install wrk (apt-get install -y wrk)"; exit 1; fi; \
	  $$SUDO apt-get install -y wrk || { $$SUDO apt-get update && $$SUDO apt-get install -y wrk; }; }
	$(PYTHON) bench/run.py $(if $(QUICK),--quick) $(if $(BASELINE),--baseline $(BASELINE))

# Fuzzing (fuzz/README.md): cargo-fuzz on nightly Rust, one target at a time, one job, niced.
# New inputs go to fuzz/work/<target> (ignored by git); fuzz/corpus/<target> is the small seed
# corpus kept in the repo, only read. Not part of `make test`.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := config filter template properties crud_path emitted
FUZZ := cargo +nightly fuzz

fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz

fuzz: fuzz-tools
	cd fuzz && $(FUZZ) build
	@for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/work/$$target; \
		echo "== fuzz $$target for $(FUZZ_SECONDS) s (log: fuzz/work/$$target.log)"; \
		( cd fuzz && nice $(FUZZ) run $$target work/$$target corpus/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 ) > fuzz/work/$$target.log 2>&1 \
			|| { tail -40 fuzz/work/$$target.log; exit 1; }; \
		grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec)' fuzz/work/$$target.log; \
	done

# Each target on its seed corpus only (-runs=0: no new inputs): the targets build and the
# seeds, earlier findings among them, pass.
fuzz-check: fuzz-tools
	cd fuzz && $(FUZZ) build
	@mkdir -p fuzz/work; for target in $(FUZZ_TARGETS); do \
		( cd fuzz && $(FUZZ) run $$target corpus/$$target -- -runs=0 2>&1 ) > fuzz/work/check-$$target.log \
			|| { tail -40 fuzz/work/check-$$target.log; exit 1; }; \
		echo "$$target: $$(grep -E '^Done' fuzz/work/check-$$target.log)"; \
	done

# The soak test (tests/soak/soak.py says what it sends and what passes): SOAK_SECONDS (default
# 600) of mixed, hostile traffic through Envoy with the filter and, identically, through Envoy
# without it; results in tests/soak/RESULTS.md. Not part of `make test`, which runs 30 seconds
# of it (tests/e2e/test_soak_short.py).
SOAK_SECONDS ?= 600
soak: build envoy
	$(PYTHON) tests/soak/soak.py --seconds $(SOAK_SECONDS) --results tests/soak/RESULTS.md

# The book (docs/book.toml, pages in docs/src/): mdBook, installed with cargo when missing (only
# what building needs: no server, no watcher), built into target/book. Not part of `make test`,
# which checks the docs' links and examples (tests/e2e/test_docs.py, test_examples.py).
MDBOOK_VERSION := 0.5.4
docs:
	@command -v mdbook >/dev/null || cargo install mdbook --locked --version $(MDBOOK_VERSION) --no-default-features --features search
	mdbook build docs
	@echo "built target/book/index.html"

fmt:
	cargo fmt
	cargo fmt -p event-hooks-testhost

clean:
	cargo clean
	rm -rf $(VENV) .run envoy/certs
