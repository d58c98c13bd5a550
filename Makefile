# Two entry points: `make demo` and `make test`. Both set up .venv from scratch when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test lint clean

setup: $(STAMP)

# torch first, pinned: the 2.14.1 wheel and its matching torchvision are on this machine's disk
# (PyPI's torchvision does not import beside the CPU-only torch 2.13 wheel).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Debian packages the tests need: chromium for the browser tests (driven by Playwright; Playwright's own
# browser download is never used), fonts to render text onto test photos (Latin and Chinese), and
# tesseract with Chinese for the alternative OCR engine.
DEBS := chromium fonts-dejavu-core fonts-noto-cjk tesseract-ocr tesseract-ocr-chi-sim
browser:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: setup
	$(BIN)/mmsearch demo sample_images

test: setup browser
	$(BIN)/python -m pytest -q --durations=20

# ruff, then the layer contracts in .importlinter (which layer may import which; only the store imports chromadb)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .mmsearch-demo .mmsearch-demo-offline
