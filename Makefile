# kubelite: `make run` brings up a local cluster with the demo, `make test` runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt-installed
APT_PACKAGES := kubectl ca-certificates

.PHONY: install run test lint clean

install: $(STAMP)

$(APT_STAMP):
	@command -v kubectl >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -yq $(APT_PACKAGES))
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml $(APT_STAMP)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

test: install
	$(BIN)/pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check src tests bench

run: install
	$(BIN)/kubelite up --data-dir /var/lib/kubelite

clean:
	rm -rf $(VENV)
