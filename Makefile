# callgate: the two quick-start commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/setup.cfg)
EXAMPLES := $(wildcard tests/plugins/*/setup.cfg)

.PHONY: install run test test-sqlite test-postgres test-floors bench screenshots container-smoke clean

$(BIN)/gateway: setup.cfg $(PLUGINS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools
	$(BIN)/pip install -q -e '.[test]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

$(VENV)/.test-plugins: $(BIN)/gateway $(EXAMPLES)
	$(BIN)/pip install -q $(foreach p,$(EXAMPLES),-e $(dir $(p)))
	touch $@

## install: the core, the built-in plugins and the test tools into $(VENV)
install: $(BIN)/gateway

## run: the gateway on the embedded SQLite store with a generated development key
run: install
	$(BIN)/gateway serve --dev

## test: the whole test suite: on SQLite, and on PostgreSQL the store contract and the replica tests
## (server CALLGATE_TEST_POSTGRES, default 127.0.0.1:5432; unreachable, they fail with one line)
test: install $(VENV)/.test-plugins
	$(BIN)/python -m pytest -q

## test-sqlite, test-postgres: one of the two halves
test-sqlite: install $(VENV)/.test-plugins
	$(BIN)/python -m pytest -q -m "not postgres"

test-postgres: install $(VENV)/.test-plugins
	$(BIN)/python -m pytest -q -m postgres

## test-floors: the suite on exactly the declared minimum versions (a floor that is not enough fails)
test-floors:
	rm -rf .venv-floors
	$(PYTHON) -m venv .venv-floors
	.venv-floors/bin/pip install -q --upgrade pip setuptools
	$(PYTHON) scripts/floors.py > .venv-floors/floors.txt
	.venv-floors/bin/pip install -q -c .venv-floors/floors.txt -e '.[test]' \
		$(foreach p,$(PLUGINS),-e $(dir $(p))) $(foreach p,$(EXAMPLES),-e $(dir $(p)))
	.venv-floors/bin/python -m pytest -q -p no:cacheprovider

## bench: the benchmarks (see bench/README.md); they use the test-only plugins too
bench: install $(VENV)/.test-plugins
	$(BIN)/python -m bench

## screenshots: refresh docs/app/*.png from the app's browser tests (Debian's chromium; never `playwright install`)
screenshots: install $(VENV)/.test-plugins
	CALLGATE_SCREENSHOTS=docs/app $(BIN)/python -m pytest -q plugins/bitrix24/tests/test_bitrix24_app_browser.py

## container-smoke: build the Containerfile and run the image (needs root; docs/operations.md)
container-smoke:
	scripts/container-smoke.sh

clean:
	rm -rf $(VENV) .venv-floors build *.egg-info
