# The two commands a newcomer needs are `make smoke` and `make test` (see README).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup smoke test shard bench

setup:
	bash scripts/setup.sh

# Main job: bring the embedded local stack up, run the smoke checks, tear it all down.
smoke: setup
	$(PY) -m pytest experiments/test_smoke.py

# Everything CI runs: unit and integration tests, then the smoke checks.
test: setup
	$(PY) -m pytest

# One matching-engine shard in the foreground (Ctrl-C stops it), no broker.
shard: setup
	mkdir -p data
	KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP-} WAL_PATH=$${WAL_PATH:-data/wal-a.log} $(PY) -m matchlab.shard

bench: setup
	$(PY) benchmarks/bench_matching.py
