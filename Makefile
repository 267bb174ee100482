# grey — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# moto (the S3 server) pins botocore differently from aioboto3, so it gets its own venv.
SERVICES_VENV := .cache/services-venv
SERVICES_STAMP := $(SERVICES_VENV)/.installed
export GREY_PYTHON := $(CURDIR)/$(SERVICES_VENV)/bin/python
# The demo and benchmarks talk to the Kafka that scripts/services starts (GREY_KAFKA_PORT moves it).
# Not exported: the unit tests declare memory:// brokers, which GREY_BROKER would override.
LOCAL_BROKER := kafka://127.0.0.1:$(or $(GREY_KAFKA_PORT),9092)

.PHONY: venv test unit integration lint demo bench bench-quick bench-peers peers services-up services-down clean

venv: $(STAMP) $(SERVICES_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@

$(SERVICES_STAMP):
	$(PYTHON) -m venv $(SERVICES_VENV)
	$(SERVICES_VENV)/bin/pip install -q --upgrade pip
	$(SERVICES_VENV)/bin/pip install -q 'moto[server]>=5'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check grey tests examples bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# The whole suite against real services; starts what is not running and stops only that.
test: venv lint
	GREY_KAFKA_SASL=1 scripts/with-services kafka redis s3 -- $(BIN)/pytest -q -p no:cacheprovider tests

integration: venv
	scripts/with-services kafka -- $(BIN)/pytest -q tests/integration

demo: venv
	GREY_BROKER=$(LOCAL_BROKER) scripts/with-services kafka -- $(BIN)/python examples/clickstream.py --events 200000

# A smoke run of the side-by-side benchmark (20,000 events, one round, about 2 minutes once the
# peers are built); results and plots go to .cache/bench-quick/, never asserted on.
bench-quick: venv peers
	$(BIN)/pip install -q -e '.[bench]'
	GREY_BROKER=$(LOCAL_BROKER) scripts/with-services kafka -- $(BIN)/python bench/bench_peers.py --quick

# Everything docs/benchmarks*.md report (a few hours on 2 cores).
bench: venv peers
	$(BIN)/pip install -q -e '.[bench]'
	GREY_BROKER=$(LOCAL_BROKER) scripts/with-services kafka -- $(BIN)/python bench/bench_runtime.py --events 1000000 --repeat 3
	GREY_BROKER=$(LOCAL_BROKER) scripts/with-services kafka -- $(BIN)/python bench/bench_tables.py --events 1000000 --repeat 3
	GREY_BROKER=$(LOCAL_BROKER) scripts/with-services kafka -- $(BIN)/python bench/bench_eos.py --events 1000000
	$(MAKE) bench-peers

# The peers of the side-by-side benchmark: faust-streaming and Quix Streams in their own venv
# (their pins conflict with grey's), Kafka Streams built with Maven; both under .cache/.
peers:
	bench/peers/setup-venv
	bench/peers/kstreams/build >/dev/null

bench-peers: venv peers
	$(BIN)/pip install -q -e '.[bench]'
	GREY_BROKER=$(LOCAL_BROKER) scripts/with-services kafka -- $(BIN)/python bench/bench_peers.py --events 500000 --repeat 3
	GREY_BROKER=$(LOCAL_BROKER) scripts/with-services kafka -- $(BIN)/python bench/bench_peers.py --events 500000 \
		--repeat 3 --size 1000 --phases throughput

services-up: venv
	scripts/services up

services-down:
	scripts/services down

clean:
	scripts/services clean || true
	rm -rf $(VENV) .cache/services-venv .pytest_cache .mypy_cache .ruff_cache
