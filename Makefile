# The two commands a newcomer needs are `make smoke` and `make test` (see README); `make docs` serves the docs.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup smoke test docs docs-check shard bench

setup:
	bash scripts/setup.sh

# Main job: bring the embedded local stack up, run the smoke checks, tear it all down.
smoke: setup
	$(PY) -m pytest experiments/test_smoke.py

# Everything CI runs: the docs site (docs-check), the images (built only where their content changed), unit
# and integration tests and the smoke checks, the smoke checks again on the Docker engine (--backend docker),
# the fault suite, then both ASR suites in the quick profile (about 44 minutes in all on two cores; what did
# not fit the 45 CI has: C4's throttled gateway, 3.5 min, `pytest -m capacity -k throttled`; C3's cost
# model, 5 min, `-k cost_model`; the calibration's power check, 3.2 min, `pytest -m calibration -k
# delay_injected`; its shams, 9 min). A FAIL verdict is a measured result and does not fail this target;
# a verdict that could not be computed (no data, a broken experiment) does, as does any failure in the
# first steps or a container, network or volume a run left on the engine.
# Its setup installs and starts a Docker engine where there is none (WITH_DOCKER=1: Debian, root or sudo).
test: export WITH_DOCKER := 1
test: setup docs-check
	$(VENV)/bin/matchlab images
	$(PY) -m pytest --durations=15
	$(PY) -m pytest experiments/test_smoke.py --backend docker --reports-dir reports/docker-smoke
	$(PY) -m pytest -m faults --durations=8
	$(PY) -m pytest -m "asr1 or asr2" --profile quick --reports-dir reports/asr-quick --html=reports/asr-quick.html; \
	  rc=$$?; [ $$rc -le 1 ] || exit $$rc
	$(PY) -m matchlab.experiment.check reports/asr-quick --asr "ASR 1" --asr "ASR 2"
	$(PY) -m matchlab.containers.leftovers

# The docs site on http://127.0.0.1:8000, rebuilt as pages change; Ctrl-C stops it.
docs: setup
	$(PY) -m pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve -a 127.0.0.1:8000

# The docs site built with every warning an error (a broken link or anchor fails it), after checking that
# the generated reference pages match the code (python -m matchlab.docs_reference rewrites them).
docs-check: setup
	$(PY) -m pip install -q -e '.[docs]'
	$(PY) -m matchlab.docs_reference --check
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

# One matching-engine shard in the foreground (Ctrl-C stops it), no broker. Its admin and seed
# endpoints answer 401 unless ADMIN_TOKEN is exported (docs: reference/security.md).
shard: setup
	mkdir -p data
	KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP-} WAL_PATH=$${WAL_PATH:-data/wal-a.log} $(PY) -m matchlab.shard

bench: setup
	$(PY) benchmarks/bench_matching.py
