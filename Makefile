# Two commands set everything up: `make run` and `make test`. Both create or refresh .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The torch build this project is tested with; override e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SHARED_DATA := $(abspath ../shared/data)

.PHONY: run test browser demo bench study-mnist clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# The service on this machine with nothing else to install: gateway, a child worker, an
# embedded broker and SQLite under $ROBUSTNESS_HOME. Registers a demo model and prints a curl
# line that audits it. `make run DATA_ROOT=../shared/data` trains the demo model on MNIST.
PORT ?= 8000
run: $(STAMP)
	$(VENV)/bin/robustness serve --demo --port $(PORT) $(if $(DATA_ROOT),--data-root $(DATA_ROOT),)

# The library alone: train a small model on digits and audit it through the CLI (out/demo/).
demo: $(STAMP)
	$(VENV)/bin/robustness demo --out-dir out/demo

# The report pages are tested in a real browser: Debian's chromium, installed here if missing
# (as root; elsewhere those tests skip unless ROBUSTNESS_TEST_REQUIRE_BROWSER is set).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		  { apt-get install -y -q chromium >/dev/null 2>&1 || \
		    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
		echo "chromium is not installed: the browser tests will skip"

test: $(STAMP) browser
	ROBUSTNESS_TEST_DATA_ROOT=$${ROBUSTNESS_TEST_DATA_ROOT:-$(SHARED_DATA)} \
		$(PY) -m pytest $(PYTEST_ARGS)

# The MNIST defense study (docs/results/mnist-defenses.md); about 45 minutes on 2 CPU cores.
study-mnist: $(STAMP)
	$(PY) studies/mnist_defenses.py --data-root $${ROBUSTNESS_DATA_ROOT:-$(SHARED_DATA)} $(STUDY_ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache
