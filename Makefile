# camflow: `make demo` runs the whole pipeline on a demo-sized synthetic benchmark and prints
# its tables; `make test` runs the checks and the test suite. `make help` lists the rest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.camflow-installed
# a config overlay for `tables`, `report` and `run` (e.g. CONFIG=config/voc12.yaml)
CONFIG ?=
TARGETS ?= all
REPORT ?= results/report.html
SNAKEMAKE := $(BIN)/snakemake
OVERLAY = $(if $(CONFIG),--configfile=$(CONFIG))

.PHONY: help demo test lint install tables report run results-doc clean-results bench

help:
	@echo "make demo          install, run the demo pipeline (~5 min on 2 cores), print its tables"
	@echo "make test          ruff, snakemake --lint, the test suite"
	@echo "make tables        every paper table: its target rule, paper and result path"
	@echo "make run TARGETS='gslm_table1' [CONFIG=config/voc12.yaml]   build tables"
	@echo "make report [TARGETS=...] [CONFIG=...]   HTML report of what TARGETS built ($(REPORT))"
	@echo "make bench         the benchmarks in benchmarks/ (about 30 min on 2 cores; with CUDA also its GPU section), then docs/benchmarks.md"
	@echo "make results-doc   docs/results/{synthetic,synthetic_parts,demo}.md (builds what is missing: hours on 2 cores)"

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
	$(SNAKEMAKE) --configfile=config/demo.yaml
	$(SNAKEMAKE) --configfile=config/demo.yaml --report results/demo/report.html
	@echo
	@$(BIN)/camflow show --configfile=config/demo.yaml
	@echo "HTML report (tables, figures, training curves): $(CURDIR)/results/demo/report.html"
	@echo "Every paper table: make tables"

test: $(STAMP)
	$(BIN)/ruff check .
	$(SNAKEMAKE) --lint --quiet all
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(SNAKEMAKE) --lint

tables: $(STAMP)
	@$(BIN)/camflow tables $(OVERLAY)

run: $(STAMP)
	$(SNAKEMAKE) $(TARGETS) $(OVERLAY)

report: $(STAMP)
	$(SNAKEMAKE) $(TARGETS) $(OVERLAY) --report $(REPORT)
	@echo "HTML report: $(CURDIR)/$(REPORT)"

# docs/results/: what the code produces, generated from the result files (never typed)
results-doc: $(STAMP)
	$(SNAKEMAKE) docs/results/synthetic.md --config targets='[cam_seeds,base_pipeline,gslm_table1,gslm_table2,fullcam_table1,fullcam_table6,claims,pnoc_table2,pnoc_table3,pnoc_table6,pnoc_table7,pnoc_table8,pnoc_table10]'
	$(SNAKEMAKE) docs/results/synthetic_parts.md --config targets='[cam_seeds,pnoc_table2,pnoc_table3,pnoc_table6,pnoc_table7,pnoc_table8,pnoc_table10]'
	$(SNAKEMAKE) docs/results/demo.md --configfile=config/demo.yaml

clean-results:
	rm -rf results .snakemake

# Every benchmark writes results/benchmarks/<name>.json; report.py renders docs/benchmarks.md.
BENCHMARKS := random_walk fullcam cam_cache cam_inference
bench: $(STAMP)
	for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py || exit 1; done
	$(BIN)/python benchmarks/report.py
