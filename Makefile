# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup run test lint format archives bench loadtest demo-picture reliability-report audit scan k8s-config images train evaluate clean

setup:
	@bash scripts/setup.sh

## train: the default weights' recipe (datasets, trainings, export, evaluation; about an hour on 2 cores)
## run: set up, build archives from weights/ (or *_WEIGHTS), start TorchServe + workflow (+ bot with TELEGRAM_BOT_TOKEN)
run: setup
	$(PY) -m serving.run

## test: set up, then ruff and every test
test: setup lint
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check .

format: setup
	$(PY) -m ruff check --fix . && $(PY) -m ruff format .

## archives: build model_store/*.mar and restore.war only
archives: setup
	$(PY) -m serving.archive

## bench: speed and overhead figures (not a test); benchmarks.front: what the nginx front adds
bench: setup
	$(PY) -m benchmarks.serving
	$(PY) -m benchmarks.front
	$(PY) -m benchmarks.suite

## loadtest: 300 requests at concurrency 32 over every endpoint and the workflow (default weights)
loadtest: setup
	$(PY) -m benchmarks.loadtest --requests 300 --concurrency 32

## reliability-report: load, faults, hostile input and the bot's fault tests → results/reliability.md
reliability-report: setup
	$(PY) -m benchmarks.reliability

## demo-picture: the README's before/after picture from the default weights
demo-picture: setup
	$(PY) -m serving.demo --photo .venv/lib/python3.11/site-packages/skimage/data/coffee.png

## audit: pip-audit over the pinned dependencies (exit 3: the vulnerability database was unreachable)
audit: setup
	$(PY) scripts/audit_dependencies.py

## scan: checkov (rendered overlays, Dockerfiles), hadolint, bandit, mypy; in their own environment
## .venv-scan; anything not accepted in docs/deploy.md ("Accepted scanner findings") fails
scan: setup
	@test -x .venv-scan/bin/python || python3 -m venv .venv-scan
	@cmp -s requirements-scan.txt .venv-scan/requirements-scan.txt || { \
		.venv-scan/bin/python -m pip install -q -r requirements-scan.txt \
		&& cp requirements-scan.txt .venv-scan/requirements-scan.txt; }
	$(PY) scripts/scan.py

## k8s-config: regenerate the cluster config.properties and PrometheusRule (after editing
## config.properties or monitoring/alerts.yml)
k8s-config: setup
	$(PY) -m k8s.render_config

images:
	bash docker/build-images.sh

train: setup
	bash training/recipe_cpu.sh

evaluate: setup
	$(PY) -m training.evaluate

clean:
	rm -rf model_store/*.mar model_store/*.war logs results build .pytest_cache
