# Two commands on a fresh machine: `make demo` and `make test` (contracts.md).
# Everything is installed here: Debian packages (scripts/install-system-deps.sh) and a local
# virtual environment .venv from the pinned requirements.lock.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-deps
DEMO_SEED ?= 2026

.PHONY: setup system test test-fast demo bench lock clean model

setup: $(STAMP) $(SYSTEM_STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(SYSTEM_STAMP): scripts/install-system-deps.sh
	@mkdir -p $(VENV)
	bash scripts/install-system-deps.sh
	@touch $@

system:
	bash scripts/install-system-deps.sh

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

demo: setup
	rm -rf demo/study demo/output
	$(VENV)/bin/nstage synth demo/study --cases 1 --seed $(DEMO_SEED) --preset clinical --preview
	$(PY) -m nstage.synth.show demo/study/case_0000
	$(PY) app.py -i demo/study/case_0000/dicom -o demo/output -m models
	$(PY) -m nstage.summary demo/output
	@echo "report: demo/output/report.pdf (and report.png); DICOM SEG, SR and Encapsulated PDF: demo/output/*.dcm"

# The shipped station classifier (models/station_cnn/, card in models/README.md): synthetic training
# cohort (seed 1000, small preset; config/classifier.json "cohorts"), generator station maps, seeded training.
model: setup
	test -f data/model/train_s1000/cohort.csv || $(VENV)/bin/nstage synth data/model/train_s1000 --cases $(or $(MODEL_CASES),40) --seed 1000 --preset small --jobs 2
	$(VENV)/bin/nstage train --cohort data/model/train_s1000 --stations truth --out data/model/checkpoint --resume --export models

bench: setup
	$(PY) -m bench.run

lock:
	rm -rf /tmp/nstage-lock-venv && $(PYTHON) -m venv /tmp/nstage-lock-venv
	/tmp/nstage-lock-venv/bin/pip install --quiet -r requirements.txt
	( echo "# Full pinned tree of a fresh .venv (pip freeze), installed by the Makefile. Regenerate with \`make lock\`."; \
	  /tmp/nstage-lock-venv/bin/pip freeze --all | grep -v "^pip==" | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' ) > requirements.lock

clean:
	rm -rf demo bench/work .pytest_cache
