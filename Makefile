# Two commands: `make lab` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab lab-instructor test unit classroom browser-test site site-check notebook notebooks student clean-venv help

help:
	@echo "make lab        write the student versions to student/ (never overwriting your work) and open"
	@echo "                JupyterLab on student/00_welcome.ipynb (creates .venv on first use)"
	@echo "make lab-instructor   open JupyterLab on the instructor version (notebooks/, solutions included)"
	@echo "make test       unit tests + every notebook under nbval + nbgrader autograding (what CI runs)"
	@echo "make unit       unit tests only (fast)"
	@echo "make classroom  nbgrader end to end: release, then autograde a blank and a solved submission"
	@echo "make browser-test   JupyterLab in headless Chromium: instructor and student 01 (needs /usr/bin/chromium)"
	@echo "make notebook NB=01_gradient_descent   rebuild one notebook from notebooks/src and execute it"
	@echo "make notebooks  rebuild and execute every notebook"
	@echo "make student    write student versions (solutions removed) to student/"
	@echo "make site       build the website into _site/ from the stored notebooks (offline, nothing re-run)"
	@echo "make site-check read every page of _site/ in headless Chromium (needs /usr/bin/chromium)"

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/python tools/student_version.py
	$(BIN)/jupyter lab student/00_welcome.ipynb

lab-instructor: $(STAMP)
	$(BIN)/jupyter lab notebooks/00_welcome.ipynb

test: $(STAMP)
	COURSE_TEST_CLASSROOM=1 $(BIN)/python -m pytest -n 2 --dist loadfile --nbval tests notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest tests

notebook: $(STAMP)
	$(BIN)/python tools/nbbuild.py notebooks/src/$(NB).py

notebooks: $(STAMP)
	$(BIN)/python tools/nbbuild.py notebooks/src/*.py

student: $(STAMP)
	$(BIN)/python tools/student_version.py

classroom: $(STAMP)
	COURSE_TEST_CLASSROOM=1 $(BIN)/python -m pytest tests/test_classroom.py

browser-test: $(STAMP)
	COURSE_TEST_BROWSER=1 $(BIN)/python -m pytest tests/test_browser.py

site: $(STAMP)
	$(BIN)/python tools/build_site.py

site-check: $(STAMP)
	$(BIN)/python tools/site_check.py

clean-venv:
	rm -rf $(VENV)
