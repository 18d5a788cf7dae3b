# Two commands on a fresh machine: `make demo` and `make test` (contracts.md).
# Everything is installed here: Debian packages (scripts/install-system-deps.sh) and a local
# virtual environment .venv from the pinned requirements.lock.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-deps
# The demo case, chosen by rule: the first seed from 2026 upward whose truth (case_0000) is N2 with a metastatic
# node of >= 10 mm short axis or SUVmax >= 2.5, i.e. disease a reader can see on PET/CT (tests/synth/test_demo_case.py).
# Seed 2026 is the occult counter-example (two metastases under 10 mm at SUV 1.2-1.4): make demo DEMO_SEED=2026.
DEMO_RULE_SEED := 2031
DEMO_SEED ?= $(DEMO_RULE_SEED)
DEMO_RULE := the first seed from 2026 up whose truth is N2 with a metastatic node >= 10 mm short axis or SUVmax >= 2.5 (visible on PET/CT)

.PHONY: setup system test test-fast demo bench lock clean model image test-image device-prep

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

test: setup setup-federated test-image
	$(PY) -m pytest -q -p no:cacheprovider

# The MAP-style image of the app, tagged nstage-app:latest (Dockerfile; docker, else podman set up by
# scripts/setup-podman.sh; a locally bootstrapped Debian base where the public one cannot be pulled).
image:
	bash scripts/build-image.sh

# Before the tests: the image where it can be built (root may install podman; an engine may be there
# already); elsewhere tests/test_image.py skips and says why.
test-image:
	@if [ "$$(id -u)" -eq 0 ] || command -v podman >/dev/null 2>&1 || docker info >/dev/null 2>&1; then \
	  bash scripts/build-image.sh; \
	else echo "no container engine, and not root to install podman: the image is not built (tests/test_image.py skips)"; fi

test-fast: setup setup-federated
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

# The app runs with Holoscan's own logging at ERROR (HOLOSCAN_LOG_LEVEL, and HOLOSCAN_EXECUTOR_LOG_LEVEL for its GXF
# executor): without a CUDA driver it warns that cudaGetDeviceCount failed (harmless, docs/app.md), and at the end of
# every normal run its scheduler warns "Scheduler stopped: Some entities are waiting for execution, but there are no
# periodic or async entities to get out of the deadlock". Neither is an error; the app's own log is unchanged.
demo: setup
	rm -rf demo/study demo/output
	$(VENV)/bin/nstage synth demo/study --cases 1 --seed $(DEMO_SEED) --preset clinical --preview
	$(PY) -m nstage.synth.show demo/study/case_0000
	HOLOSCAN_LOG_LEVEL=ERROR HOLOSCAN_EXECUTOR_LOG_LEVEL=ERROR $(PY) app.py -i demo/study/case_0000/dicom -o demo/output -m models
	@echo "report: demo/output/report.pdf (and report.png); DICOM SEG, SR and Encapsulated PDF: demo/output/*.dcm"
	$(PY) -m nstage.summary demo/output --truth demo/study/case_0000/truth.json
	@if [ "$(DEMO_SEED)" = "$(DEMO_RULE_SEED)" ]; then echo "demo case: seed $(DEMO_SEED), chosen by rule: $(DEMO_RULE); for an occult N2 that no method sees: make demo DEMO_SEED=2026"; \
	else echo "demo case: seed $(DEMO_SEED) (the rule's case, $(DEMO_RULE), is seed $(DEMO_RULE_SEED))"; fi

# The shipped station classifier (models/station_cnn/, card in models/README.md): two synthetic training
# cohorts of generator model 3 (small preset seed 17000, clinical preset seed 17100; config/classifier.json
# "cohorts"), generator station maps, seeded training (deterministic on CPU).
MODEL_DATA ?= data/v3
model: setup
	test -f $(MODEL_DATA)/train_small_s17000/cohort.csv || $(VENV)/bin/nstage synth $(MODEL_DATA)/train_small_s17000 --cases 120 --seed 17000 --preset small --jobs 2
	test -f $(MODEL_DATA)/train_clinical_s17100/cohort.csv || $(VENV)/bin/nstage synth $(MODEL_DATA)/train_clinical_s17100 --cases 30 --seed 17100 --preset clinical --jobs 2
	$(VENV)/bin/nstage train --cohort $(MODEL_DATA)/train_small_s17000 --cohort $(MODEL_DATA)/train_clinical_s17100 --stations truth \
	  --out $(MODEL_DATA)/checkpoint --resume --export models --jobs 2

bench: setup
	$(PY) -m bench.run

# The GPU check of the torch registration backend (issue 19, bench/stationmap/device/run.sh): three clinical cases
# registered with Elastix here, the backend's inputs and two pure-Python wheels for the device machine.
DEVICE_DATA ?= data/device
device-prep: setup
	$(PY) -m bench.stationmap.device.prepare $(DEVICE_DATA) --cases 3
	$(PY) -m pip download --quiet --no-deps --only-binary :all: -d $(DEVICE_DATA)/wheels \
	  $$(grep -E '^(hf-deepali|packaging)==' requirements.lock)

lock:
	rm -rf /tmp/nstage-lock-venv && $(PYTHON) -m venv /tmp/nstage-lock-venv
	/tmp/nstage-lock-venv/bin/pip install --quiet -r requirements.txt
	( echo "# Full pinned tree of a fresh .venv (pip freeze), installed by the Makefile. Regenerate with \`make lock\`."; \
	  /tmp/nstage-lock-venv/bin/pip freeze --all | grep -v "^pip==" | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' ) > requirements.lock

clean:
	rm -rf demo bench/work .pytest_cache

# ---- Federated training: NVIDIA FLARE in .venv (nstage[federated], docs/federated.md) -----------------------
# For the tests and `nstage fed`, never in the app's image (the Dockerfile installs requirements.lock only):
# nvflare 2.9.0 and the packages it adds, pinned in requirements-federated.lock and installed with --no-deps
# (nvflare takes the lock's numpy, protobuf and grpcio as they are).
FED_STAMP := $(VENV)/.federated
.PHONY: setup-federated lock-federated
setup-federated: $(FED_STAMP)

$(FED_STAMP): $(STAMP) requirements-federated.lock
	$(PY) -m pip install --quiet --no-deps -r requirements-federated.lock
	$(PY) -c "import nvflare.job_config.api, nstage.training.federated.job"
	@touch $@

lock-federated:
	rm -rf /tmp/nstage-lock-fed && $(PYTHON) -m venv /tmp/nstage-lock-fed
	/tmp/nstage-lock-fed/bin/pip install --quiet -r requirements.lock
	/tmp/nstage-lock-fed/bin/pip install --quiet "nvflare==2.9.0" -c requirements.lock
	( head -3 requirements-federated.lock; grep -v '^#' requirements.lock | sort > /tmp/nstage-lock-fed/main.txt; \
	  /tmp/nstage-lock-fed/bin/pip freeze --all | grep -v "^pip==" | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' | sort | \
	    comm -13 /tmp/nstage-lock-fed/main.txt - ) > /tmp/nstage-lock-fed/federated.lock && mv /tmp/nstage-lock-fed/federated.lock requirements-federated.lock

# ---- MONAI Label server environment: .venv-label (label_app/, docs/monai-label.md) --------------------
# Its own virtual environment: the project's locked stack (requirements.lock, unchanged) plus monailabel
# 0.8.5 and its light dependencies, all pinned in requirements-label.lock and installed with --no-deps
# (monailabel's numpy<2 dependencies would replace the locked numpy 2), and the pydicom import shim
# (label_app/pydicom_shim.py). Server: .venv-label/bin/monailabel start_server --app label_app --studies DIR
LABEL_VENV := .venv-label
LABEL_PY := $(LABEL_VENV)/bin/python
LABEL_STAMP := $(LABEL_VENV)/.installed

.PHONY: setup-label lock-label review
setup: $(LABEL_STAMP)
setup-label: $(LABEL_STAMP)

$(LABEL_STAMP): requirements.lock requirements-label.lock pyproject.toml label_app/pydicom_shim.py
	@test -x $(LABEL_PY) || $(PYTHON) -m venv $(LABEL_VENV) || python3 -m venv $(LABEL_VENV)
	$(LABEL_PY) -m pip install --quiet --upgrade pip==26.3
	$(LABEL_PY) -m pip install --quiet -r requirements.lock
	$(LABEL_PY) -m pip install --quiet --no-deps -r requirements-label.lock
	$(LABEL_PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	site=$$($(LABEL_PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  cp label_app/pydicom_shim.py "$$site/nstage_pydicom_shim.py" && echo "import nstage_pydicom_shim" > "$$site/nstage_pydicom_shim.pth"
	# monailabel's own launcher runs whatever `python` is first on PATH: run this environment's instead
	# (and with this bin/ first on PATH, where dcmqi's itkimage2segimage is: MONAI Label downloads dcmqi otherwise)
	printf '#!/bin/sh\n# MONAI Label server of .venv-label (written by the Makefile)\nbin="$$(cd "$$(dirname "$$0")" && pwd)"\nPATH="$$bin:$$PATH" exec "$$bin/python" -m monailabel.main "$$@"\n' > $(LABEL_VENV)/bin/monailabel
	chmod +x $(LABEL_VENV)/bin/monailabel
	echo '*' > $(LABEL_VENV)/.gitignore
	$(LABEL_PY) -c "import monailabel.interfaces.app, pydicom_seg, nstage.pipeline" && test -x $(LABEL_VENV)/bin/itkimage2segimage
	@touch $@

# A synthetic PET/CT study in Orthanc (DICOMweb, loopback) and the MONAI Label server on it, for a person to review
# the stations in OHIF on this machine's browser: prints the OHIF addresses; Ctrl-C stops (scripts/review.py,
# docs/monai-label.md). REVIEW_PORT 8000 is the address OHIF's MONAI Label panel proposes.
REVIEW_DIR ?= data/review
REVIEW_PORT ?= 8000
review: setup
	$(PY) scripts/review.py --work $(REVIEW_DIR) --port $(REVIEW_PORT)

lock-label:
	rm -rf /tmp/nstage-lock-label && $(PYTHON) -m venv /tmp/nstage-lock-label
	/tmp/nstage-lock-label/bin/pip install --quiet -r requirements.lock
	/tmp/nstage-lock-label/bin/pip install --quiet -r requirements-label.txt -c requirements.lock
	/tmp/nstage-lock-label/bin/pip install --quiet --no-deps monailabel==0.8.5 pydicom-seg==0.4.1
	( echo "# .venv-label: installed with --no-deps on top of requirements.lock (the project's locked stack, unchanged)."; \
	  echo "# The packages the MONAI Label server adds, pinned (pip freeze of a fresh .venv-label less requirements.lock)."; \
	  echo "# Regenerate with \`make lock-label\`; why --no-deps and the pydicom shim: docs/monai-label.md."; \
	  grep -v '^#' requirements.lock | sort > /tmp/nstage-lock-label/main.txt; \
	  /tmp/nstage-lock-label/bin/pip freeze --all | grep -v "^pip==" | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' | sort | \
	    comm -13 /tmp/nstage-lock-label/main.txt - ) > requirements-label.lock
