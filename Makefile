# swapstation: `make demo` and `make test` each set themselves up on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO_ARGS ?=
# Test files run in this many processes (pytest-xdist, one file per process so a module's tests
# keep their order). The suite mostly waits on simulated hardware, so 3 fit 2 cores; 0 = serial.
TEST_WORKERS ?= 3

.PHONY: demo test lint typecheck imports unit repeat bench chaos fuzz clean mosquitto venv certbind install-certbind docs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/swapctl demo $(DEMO_ARGS)

# Mosquitto is a test dependency: the suite runs against a real broker as well as the embedded one.
# The certbind plugin's build dependencies (Mosquitto plugin and OpenSSL headers, gcc) come with it.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian's mosquitto (test dependency)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients) >/dev/null \
	  || { echo "ERROR: could not install mosquitto" >&2; exit 1; }; \
	else \
	  echo "ERROR: the tests need Mosquitto. Install it (Debian/Ubuntu: sudo apt-get install mosquitto mosquitto-clients)" >&2; exit 1; \
	fi
	@{ command -v mosquitto || ls /usr/sbin/mosquitto; } >/dev/null 2>&1 || { echo "ERROR: mosquitto still missing" >&2; exit 1; }
	@if $(CERTBIND_DEPS_OK); then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing the certbind plugin's build dependencies ($(CERTBIND_PKGS))"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CERTBIND_PKGS)) >/dev/null \
	  || { echo "ERROR: could not install $(CERTBIND_PKGS)" >&2; exit 1; }; \
	else \
	  echo "ERROR: building the certbind plugin needs the Mosquitto plugin and OpenSSL headers and gcc. Install them (Debian/Ubuntu: sudo apt-get install $(CERTBIND_PKGS))" >&2; exit 1; \
	fi
	@$(CERTBIND_DEPS_OK) || { echo "ERROR: $(CERTBIND_PKGS) still missing" >&2; exit 1; }

# Mosquitto plugin: a TLS client certificate's CN must equal the MQTT user name (header of
# config/mosquitto/certbind.c). Built by scripts/build-certbind.sh, which rebuilds only when the
# source changed; enabled by a `plugin` line in mosquitto.conf and a broker restart.
CERTBIND_PKGS    := mosquitto-dev libmosquitto-dev libssl-dev gcc
CERTBIND_DEPS_OK := { test -f /usr/include/mosquitto_broker.h && test -f /usr/include/mosquitto.h \
                      && test -f /usr/include/openssl/x509.h && command -v gcc >/dev/null 2>&1; }
certbind:
	scripts/build-certbind.sh .build

install-certbind: certbind
	install -d -m 755 /usr/local/lib/swapstation
	install -m 644 .build/mosquitto_certbind.so /usr/local/lib/swapstation/mosquitto_certbind.so

lint: $(STAMP)
	$(BIN)/ruff check controller simulator tests bench scripts
	$(BIN)/ruff format --check controller simulator tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy controller simulator

imports: $(STAMP)
	$(BIN)/lint-imports

# Rewrite the generated sections of README.md and docs/*.md (command tables, console keys, mode
# diagram) from the tables in the code; tests/test_docs.py fails while one is stale.
docs: $(STAMP)
	$(BIN)/python -m controller.docgen

unit: $(STAMP) mosquitto
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP) mosquitto lint typecheck imports unit

# Flaky-test hunt: the whole pytest suite N times, each in a fresh process, and a table of every
# test that ever failed. LOAD=1 keeps two CPU hogs busy meanwhile, as on a noisy CI machine.
N    ?= 10
LOAD ?= 0
repeat: $(STAMP) mosquitto
	$(BIN)/python scripts/repeat.py --runs $(N) $(if $(filter 1,$(LOAD)),--load 2,)

bench: $(STAMP) mosquitto
	PYTHONPATH=. $(BIN)/python -m bench.run --out bench/results.json

# SIGKILL the controller process at 1,000 random points of a swap (make test runs 50).
chaos: $(STAMP) mosquitto
	SWAPSTATION_CHAOS_TRIALS=1000 $(BIN)/pytest -q tests/test_chaos.py -p no:randomly

# 10,000 generated payloads per subscribed topic (make test runs 1,000 per topic), and a longer
# hypothesis state machine.
fuzz: $(STAMP) mosquitto
	SWAPSTATION_FUZZ_PER_TOPIC=10000 SWAPSTATION_STATEFUL_EXAMPLES=60 $(BIN)/pytest -q tests/test_fuzz.py tests/test_stateful.py -o timeout=3600 -n 2 --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info .build
