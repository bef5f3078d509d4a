# Two commands: `make lab` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab test unit notebook notebooks clean-venv help

help:
	@echo "make lab        open JupyterLab on the first notebook (creates .venv on first use)"
	@echo "make test       unit tests + every notebook under nbval (the CI command)"
	@echo "make unit       unit tests only (fast)"
	@echo "make notebook NB=01_gradient_descent   rebuild one notebook from notebooks/src and execute it"
	@echo "make notebooks  rebuild and execute every notebook"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/00_welcome.ipynb

test: $(STAMP)
	$(BIN)/python -m pytest --nbval tests notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest tests

notebook: $(STAMP)
	$(BIN)/python tools/nbbuild.py notebooks/src/$(NB).py

notebooks: $(STAMP)
	$(BIN)/python tools/nbbuild.py notebooks/src/*.py

clean-venv:
	rm -rf $(VENV)
