# camflow: `make demo` builds everything on the embedded synthetic benchmark; `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.camflow-installed
TABLES ?= cam_seeds base_pipeline
FIGURE ?= results/synthetic/resnet_small/cam/train/figure.png

.PHONY: demo test lint install clean-results

# Creates the virtual environment with pip when it is missing and installs camflow with
# its dependencies from the package registry. PIP_FIND_LINKS is cleared so that pip never
# picks a local CPU-only torch wheel, which torchvision cannot import.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing camflow and its dependencies into $(VENV) (torch and friends: a few minutes)..."
	PIP_FIND_LINKS= $(BIN)/python -m pip install -qq --upgrade pip
	PIP_FIND_LINKS= $(BIN)/python -m pip install -qq -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/default $(TABLES:%=results/synthetic/tables/%.csv) $(FIGURE)
	@for t in $(TABLES); do echo; cat results/synthetic/tables/$$t.md; done
	@echo "CAM overlays and the threshold curve: $(FIGURE)"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint --quiet all
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results .snakemake
