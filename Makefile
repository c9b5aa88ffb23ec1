# kubelite: `make run` brings up a local cluster with the demo, `make test` runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt-installed
# Host parts kubelite drives for real (DESIGN.md, "Real parts, not mocks").
APT_PACKAGES := ca-certificates iproute2 util-linux runc crun busybox-static skopeo \
	docker-registry apache2-utils containernetworking-plugins nftables iptables socat

.PHONY: install run test lint clean

install: $(STAMP)

# kubectl is preinstalled on these machines; Debian's own kubernetes-client is the
# fallback on a machine without it.
$(APT_STAMP): Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	command -v kubectl >/dev/null || missing="$$missing kubernetes-client"; \
	if [ -n "$$(echo $$missing)" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -yq $$missing; \
	fi
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

# A cluster that is already up is kept; the demo is (re)applied either way.
run: install
	$(BIN)/kubelite status >/dev/null 2>&1 || $(BIN)/kubelite up --nodes 3
	KUBELITE=$(BIN)/kubelite examples/demo/deploy.sh

clean:
	rm -rf $(VENV)
