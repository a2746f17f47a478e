# The two commands a new user needs: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LAKE ?= lake
# `make run` needs the pipeline only; `make test` adds the test tools and PySpark.
RUN_INSTALLED := $(VENV)/.installed-run
TEST_INSTALLED := $(VENV)/.installed-test

.PHONY: run test test-fast test-middle install docs docs-serve kafka-up kafka-down job-wheel deploy worker automations compose-tools browser-tools bench bench-quick constraints clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# An editable install leaves the project's modules as source: compile them once, as pip does for
# installed packages, so that a shell with PYTHONDONTWRITEBYTECODE set does not compile them in
# every run (0.1-0.2 s each, measured).
COMPILE_PROJECT := $(BIN)/python -m compileall -q flows tasks datasets

$(RUN_INSTALLED): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable .
	$(COMPILE_PROJECT)
	touch $@

$(TEST_INSTALLED): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[test,spark,bench,databricks]'
	$(COMPILE_PROJECT)
	touch $@ $(RUN_INSTALLED)

install: $(TEST_INSTALLED)

## Run the whole pipeline on the shipped datasets into ./lake (no accounts, no broker needed).
run: $(RUN_INSTALLED)
	$(BIN)/logistics-pipeline run --lake $(LAKE)

# pytest caches its assertion-rewritten modules (test files and the hypothesis, anyio and faker
# plugins: about 5 s a run) as bytecode: a PYTHONDONTWRITEBYTECODE inherited from the shell
# would make it rewrite them on every run.
test test-fast test-middle: export PYTHONDONTWRITEBYTECODE :=

# One pytest worker per core (at most 4: each worker starts its own Prefect server and Kafka
# broker); tests that share a module fixture or Spark stay together (xdist_group in tests/conftest.py).
WORKERS := --numprocesses=auto --maxprocesses=4 --dist=loadgroup

## The full test suite: the import contracts, then unit, integration (real Delta, dbt, Kafka, Spark) and end to end.
test: $(TEST_INSTALLED) compose-tools browser-tools
	$(BIN)/lint-imports
	$(BIN)/python -m pytest --durations=30 $(WORKERS)

## The fast lane: pure unit tests (no Delta table, broker, Spark or server), under 20 s: one pytest
## worker per core, and hypothesis properties run 15 examples each here (60 in `make test`).
test-fast: $(TEST_INSTALLED)
	$(BIN)/python -m pytest -q tests/unit --hypothesis-profile=fast --numprocesses=auto

## The middle lane: everything but Kafka, Spark, end-to-end and slow trials (real Delta, dbt, a temporary Prefect server).
test-middle: $(TEST_INSTALLED)
	$(BIN)/python -m pytest -q -m "not kafka and not spark and not e2e and not slow" $(WORKERS)

## The dbt docs site of the lake's gold (models, columns, tests, lineage) in $(LAKE)/docs; docs-serve also serves it.
docs: $(RUN_INSTALLED)
	$(BIN)/logistics-pipeline docs --lake $(LAKE)

DOCS_PORT ?= 8080
docs-serve: $(RUN_INSTALLED)
	$(BIN)/logistics-pipeline docs --lake $(LAKE) --serve --port $(DOCS_PORT)

## A real single-node Kafka on 127.0.0.1 (jars from Maven Central, cached); prints HOST:PORT last.
kafka-up:
	$(PYTHON) deployments/local_kafka.py up

kafka-down:
	$(PYTHON) deployments/local_kafka.py down

## Create the work pool when missing, then deploy prefect.yaml to PREFECT_API_URL.
deploy: $(RUN_INSTALLED)
	PREFECT=$(BIN)/prefect bash deployments/deploy.sh

## A process worker of the pool (what `prefect worker start --pool ...` does, with this venv's prefect).
worker: $(RUN_INSTALLED)
	$(BIN)/prefect worker start --pool "$${LOGISTICS_WORK_POOL:-logistics-process}" --type process

## Create or update the failed/crashed-run alert (block: LOGISTICS_ALERT_BLOCK).
automations: $(RUN_INSTALLED)
	$(BIN)/python deployments/automations.py apply

## Debian's docker-compose, so tests can validate docker-compose.yml without an engine.
compose-tools:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/dev/null 2>&1 \
	  || echo "note: could not install docker-compose (needs root on Debian/Ubuntu); its compose check will be skipped"; }

## Debian's Chromium and chromedriver, so tests can load the dbt docs site in a real headless browser.
browser-tools:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
	  || echo "note: could not install chromium and chromium-driver (needs root on Debian/Ubuntu); the docs browser test will be skipped"; }

## The job wheel a Databricks cluster installs (python_wheel_task logistics_pipeline_job, entry point
## logistics-spark): only the Spark job and what a runtime lacks; prints dist/logistics_pipeline_job-<version>-py3-none-any.whl
job-wheel: | $(BIN)/python
	$(BIN)/python deployments/job_wheel.py --out dist

## Issue 14's goals: memory, speed and fixed cost vs a DuckDB script up to scale 300 (18 M sales lines), silver vs pandas and DuckDB, Kafka vs its own tools.
## 14-20 min on 2 idle cores (plus a few to generate the CSVs the first time); needs ~10 GB free disk. JSON last line + benchmarks/out/latest.json (benchmarks/README.md explains every key).
bench: $(TEST_INSTALLED)
	$(BIN)/python -m benchmarks.run

## The same at small sizes, in under 5 minutes; every goal key, null where its sizes cannot judge it.
bench-quick: $(TEST_INSTALLED)
	$(BIN)/python -m benchmarks.run --quick

## Re-pin every installed package (run after changing dependencies in pyproject.toml).
constraints:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^logistics-pipeline' > constraints.txt

clean:
	rm -rf $(LAKE) .pytest_cache dbt_gold/target dbt_gold/logs
