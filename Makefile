# The commands people type. `make run` and `make test` set everything up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test init-db bench-search clean

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json   ## front-end libraries the app serves itself (no CDN)
	@command -v npm >/dev/null || { echo "npm is needed for the page's libraries: apt-get install nodejs npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(BIN)/.installed node_modules/.installed            ## start the app on the embedded defaults (SQLite, file sessions)
	$(BIN)/python app.py

test: $(BIN)/.installed node_modules/.installed           ## the whole test suite with coverage (starts Redis if it is down)
	bash scripts/ensure_redis.sh
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report

init-db: $(BIN)/.installed
	$(BIN)/python init_db.py

bench-search: $(BIN)/.installed
	$(BIN)/python benchmarks/search_bench.py

clean:
	rm -rf $(VENV) .coverage htmlcov .pytest_cache
