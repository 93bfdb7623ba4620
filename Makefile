# The README's two commands are `make demo` (the main job) and `make test`.

CARGO ?= cargo

.PHONY: build launcher-static demo test test-python test-slow bench fuzz snapshots

build:
	$(CARGO) build --release --workspace

# The launcher linked statically (no dynamic loader at start-up: about 0.3 ms less per
# launch, see docs/benchmarks.md), in target/x86_64-unknown-linux-gnu/release/. The
# explicit --target keeps crt-static away from build scripts and proc-macros.
launcher-static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p capsule-launch --target x86_64-unknown-linux-gnu

# The main job: build, then run a command under the built-in default policy (compiled
# on first use, cached after), and show the audit log that recorded it.
demo: build
	./target/release/capsule run echo "hello world"
	./target/release/capsule run ls -l
	./target/release/capsule verify

# Every test, as CI runs them. Tests that need an unprivileged user find it through
# CAPSULE_TEST_USER (.ci/run creates one); without it they say so and skip that half.
test:
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast
	sdk/python/run-tests.sh

# The Python SDK alone: `pip install ./sdk/python` into a fresh venv, then pytest (as
# root and as CAPSULE_TEST_USER). Needs the binaries `make test` builds first.
test-python:
	$(CARGO) build --workspace --bins
	sdk/python/run-tests.sh

# Slower checks (table freshness against the kernel sources, long property runs).
test-slow:
	CAPSULE_SLOW_TESTS=1 $(CARGO) test --workspace --no-fail-fast

bench: launcher-static
	$(CARGO) run --release -p capsule-benches --bin capsule-bench

# Review snapshot changes after an intended change in output.
snapshots:
	INSTA_UPDATE=always $(CARGO) test --workspace --no-fail-fast; git status --short '*.snap'

# Man pages for capsule, capsulec (from their clap definitions) and capsule-launch
# (hand-written: runtime-stub/man/capsule-launch.1), into target/man/man1.
MAN_DIR ?= target/man/man1
.PHONY: man
man:
	$(CARGO) build -p capsule-cli -p capsule-compiler --bins
	./target/debug/capsule man --out $(MAN_DIR)
	./target/debug/capsulec man --out $(MAN_DIR)
	cp runtime-stub/man/capsule-launch.1 $(MAN_DIR)/

# The container image, tagged `capsule`, from the Dockerfile (docs/containers.md); with
# no registry reachable, from local stand-ins of its base images.
.PHONY: docker docker-test
docker:
	packaging/docker-build.sh

# Build the image, then run the README's Docker commands, the compose file and the
# escape attacks inside the container (packaging/docker-test.sh).
docker-test: docker
	packaging/docker-test.sh
