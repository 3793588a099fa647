# s3serve: `make run` serves ./data on 127.0.0.1:9000; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ADDRESS ?= 127.0.0.1:9000

.PHONY: run test test-cache lint conformance bench bench-quick crash-torture clean

# An editable install is not byte-compiled by pip, and PYTHONDONTWRITEBYTECODE=1 (set in some
# environments) would make every start compile s3serve again (~60 ms): compile it here and in `run`.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m compileall -q s3serve
	touch $@

run: $(VENV)/.installed
	$(PY) -m compileall -q s3serve
	$(PY) -m s3serve serve ./data --address $(ADDRESS)

# The end-to-end tests drive the real aws cli v2 too: tools/ensure-awscli.sh installs Debian's.
test: $(VENV)/.installed
	bash tools/ensure-awscli.sh
	$(PY) -m ruff check s3serve tests
	$(PY) -m mypy s3serve
	$(PY) -m pytest -q

# The end-to-end suite again, through s3serve as an upstream cache in front of another s3serve.
test-cache: $(VENV)/.installed
	bash tools/ensure-awscli.sh
	$(PY) tools/e2e_through_cache.py

lint: $(VENV)/.installed
	$(PY) -m ruff check s3serve tests
	$(PY) -m mypy s3serve

# Real third-party clients (aws cli v2, boto3, s3fs-fuse, rclone, s3cmd, fsspec, minio-py, JS SDK v3,
# minio-js, pyarrow, restic, object_store, curl --aws-sigv4, the AWS CRT, the AWS SDK for Go v2)
# running users' workflows against s3serve; installs the clients it needs (Debian, PyPI, npm).
# The second pass runs them against s3serve as an upstream cache in front of another s3serve.
conformance: $(VENV)/.installed
	bash conformance/install.sh
	$(PY) -m conformance.run
	$(PY) -m conformance.run --cache

# Benchmarks against peers (moto, s3rver) and ceilings (nginx, bare aiohttp): long; never part of `make test`.
bench: $(VENV)/.installed
	bash bench/install.sh
	$(PY) -m bench.run $(BENCH_ARGS)

bench-quick: $(VENV)/.installed
	bash bench/install.sh
	$(PY) -m bench.run --quick $(BENCH_ARGS)

# Crash consistency: SIGKILL a real s3serve (sometimes --workers 2) in the middle of a random write
# load, restart it on the same ROOT and check every key and upload (tools/crash_torture.py). Long
# (~5-10 s a round); never part of `make test`. More: make crash-torture ROUNDS=1000 TORTURE_ARGS=--no-fsync
ROUNDS ?= 300
crash-torture: $(VENV)/.installed
	$(PY) tools/crash_torture.py --rounds $(ROUNDS) $(TORTURE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
