# The two commands a newcomer needs are `make run` and `make test` (see README).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test unit bench

setup:
	bash scripts/setup.sh

# Main job: for now, one matching-engine shard in the foreground (Ctrl-C stops it).
run: setup
	mkdir -p data
	KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP-} WAL_PATH=$${WAL_PATH:-data/wal-a.log} $(PY) -m matchlab.shard

test: setup
	$(PY) -m pytest

unit:
	$(PY) -m pytest tests/unit

bench: setup
	$(PY) benchmarks/bench_matching.py
