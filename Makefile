# Two commands: `make lab` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab test unit notebook notebooks student check-exercises clean-venv help

help:
	@echo "make lab        open JupyterLab on the first notebook (creates .venv on first use)"
	@echo "make test       unit tests + every notebook under nbval (the CI command)"
	@echo "make unit       unit tests only (fast)"
	@echo "make notebook NB=01_gradient_descent   rebuild one notebook from notebooks/src and execute it"
	@echo "make notebooks  rebuild and execute every notebook"
	@echo "make student    write student versions (solutions removed) to student/"
	@echo "make check-exercises   run the student versions: every check must fail helpfully"

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -r requirements-nodeps.txt
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

student: $(STAMP)
	$(BIN)/python tools/student_version.py

check-exercises: $(STAMP)
	COURSE_TEST_STUDENT=1 $(BIN)/python -m pytest tests/test_exercises.py

clean-venv:
	rm -rf $(VENV)
