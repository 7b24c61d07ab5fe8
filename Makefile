# settle: `make run` runs the service, `make test` runs the tests, `make install` sets up.
# Both use DATABASE_URL / REDIS_URL when they answer, else private servers under .run/.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WITH_SERVICES := $(BIN)/python -m devtools.devservices --

export PORT ?= 8080
export API_TOKENS ?= dev-token
export STRIPE_WEBHOOK_SECRETS ?= whsec_dev

.PHONY: install run test check clean browser bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
		|| { echo "settle: Python 3.11 or newer is needed; install it with: sudo apt-get install python3"; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
			&& echo "settle: installing python3-venv with apt-get (running as root)" \
			&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
			&& $(PYTHON) -c 'import ensurepip, venv'; } \
		|| { echo "settle: Python's venv module is missing; install it with: sudo apt-get install python3-venv"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	@touch $(STAMP)

run: install
	@$(WITH_SERVICES) $(BIN)/python -m devtools.devrun

test: install browser
	$(BIN)/mypy
	$(WITH_SERVICES) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser test drives Debian's Chromium (no browser download is possible here).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "settle: installing Chromium for the browser test"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver >/dev/null; } \
		|| echo "settle: Chromium could not be installed; the browser test will be skipped"; \
	else \
		echo "settle: no Chromium: the browser test will be skipped (sudo apt-get install chromium chromium-driver)"; \
	fi

# By hand, not in CI: figures are ratios against a baseline measured in the same run.
bench: install
	@command -v wrk >/dev/null 2>&1 || { echo "settle: bench needs wrk: sudo apt-get install wrk"; exit 1; }
	$(WITH_SERVICES) sh -c '$(BIN)/python -m bench.intake && $(BIN)/python -m bench.latency \
		&& $(BIN)/python -m bench.settlement && $(BIN)/python -m bench.outbound \
		&& $(BIN)/python -m bench.mail'

check: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .run
