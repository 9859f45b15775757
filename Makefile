# The verbs of the course. Each target creates/updates the virtual environment first.
#   make demo                 release + autograders for every written problem set, grade the demo class
#   make demo-refresh [PS=..] rewrite the demo class demo/psNN/ from release/psNN/ (after a release changed)
#   make test                 the whole test suite (what CI runs)
#   make new PS=ps12 TITLE="..." [TOPIC=...]  scaffold a new problem set that passes check-source/release/validate
#   make release [PS=ps01]    nbgrader generate_assignment -> release/
#   make autograder [PS=..]   otter tests + Gradescope autograder.zip -> autograder/
#   make validate [PS=..]     stubs fail, solutions pass, same scores via coursekit, nbgrader and otter
#   make grade PS=ps01 SUBMISSIONS=<folder or zip> [JOBS=2] [DB=sqlite:///...] [ROSTER=roster.csv] [STUDENT=id]
#   make override PS=ps01 STUDENT=id CELL=<grade id or qN> SCORE=<points|auto> REASON="..."
#   make bench [PS=..]        timings and memory -> bench/
#   make bench-class PS=ps08 [N=300] [JOBS=2]  a synthetic class: wall, floor, memory over the batch
#   make site [DATE=2027-02-02] the course website -> build/site/ (what is released on DATE, default today)
#   make publish WEEK=n | DATE=YYYY-MM-DD  student bundles + Gradescope zips of the sets released by then -> dist/
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CK     := $(PY) -m coursekit
# one more worker than cores: much of the suite waits on subprocesses (kernels, otter, Chromium, PostgreSQL)
TEST_JOBS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))
export PS SUBMISSIONS JOBS DB ROSTER CELL_TIMEOUT MEMORY_GB OUT
export STUDENT CELL SCORE REASON
export TITLE TOPIC WEEK DATE

.PHONY: venv demo demo-refresh test test-fast list check-source new publish release check-release autograder try validate grade override bench bench-class site lint clean

venv: $(STAMP)
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(CK) demo

demo-refresh: $(STAMP)
	$(CK) demo-refresh

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadgroup --durations=15 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

list: $(STAMP)
	$(CK) list

check-source: $(STAMP)
	$(CK) check-source

new: $(STAMP)
	$(CK) new

publish: $(STAMP)
	$(CK) publish

release: $(STAMP)
	$(CK) release

check-release: $(STAMP)
	$(CK) check-release

autograder: $(STAMP)
	$(CK) autograder

try: $(STAMP)
	$(CK) try

validate: $(STAMP)
	$(CK) validate

grade: $(STAMP)
	$(CK) grade

override: $(STAMP)
	$(CK) override

bench: $(STAMP)
	$(CK) bench

bench-class: $(STAMP)
	$(CK) bench --class $(or $(N),300)

site: $(STAMP)
	$(PY) -m coursekit.site $(if $(DATE),--date $(DATE))

lint: $(STAMP)
	$(VENV)/bin/ruff check coursekit solutions tests

clean:
	rm -rf autograder/ps* grading build .pytest_cache
