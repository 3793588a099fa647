# s3serve: `make run` serves ./data on 127.0.0.1:9000; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ADDRESS ?= 127.0.0.1:9000

.PHONY: run test lint conformance bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(PY) -m s3serve serve ./data --address $(ADDRESS)

# The end-to-end tests drive the real aws cli v2 too: tools/ensure-awscli.sh installs Debian's.
test: $(VENV)/.installed
	bash tools/ensure-awscli.sh
	$(PY) -m ruff check s3serve tests
	$(PY) -m mypy s3serve
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(PY) -m ruff check s3serve tests
	$(PY) -m mypy s3serve

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
