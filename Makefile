# Migrator — the two commands: `make run` and `make test` (both set up .venv on demand).
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PYTHONUNBUFFERED := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: run test test-fast bench venv legacy-envs proto demo screenshots package package-check lint coverage clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found (Migrator needs Python 3.11)"; exit 2; }
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[gui,opencv,dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	@if [ -z "$$DISPLAY$$WAYLAND_DISPLAY" ] && [ "$$QT_QPA_PLATFORM" != "offscreen" ]; then \
	  echo "note: no display (DISPLAY/WAYLAND_DISPLAY unset): try 'xvfb-run -a make run'; see README, Troubleshooting"; fi
	$(VENV)/bin/migrator-gui

# Fails when the real-Caffe / real-Theano tiers cannot be built or were skipped; a machine that truly
# cannot build them opts out explicitly: MIGRATOR_ALLOW_MISSING_TIERS=1 make test (loud summary line).
# Parallel (pytest-xdist): one worker per core, at most 4; each test file stays on one worker so
# its module/session fixtures are built once; a crashed worker fails the run (no restart, no hang).
# The desktop-app tests run in a session of their own: Qt windows are not mixed into processes
# that ran hundreds of TensorFlow models (their proofs go to their own session file).
# JOBS=1 runs each session in one process.
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
PYTEST_PAR = $(if $(filter 1,$(JOBS)),,-n $(JOBS) --dist loadfile --max-worker-restart=0)

test: $(STAMP)
	$(VPY) -m tests.setup_envs
	QT_QPA_PLATFORM=offscreen $(VPY) -m pytest -q $(PYTEST_PAR) --ignore=tests/gui
	QT_QPA_PLATFORM=offscreen MIGRATOR_PROOFS_OUT=.cache/proofs-session-gui.json $(VPY) -m pytest -q $(PYTEST_PAR) tests/gui

test-fast: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(VPY) -m pytest -q $(PYTEST_PAR) -m "not slow" --ignore=tests/gui
	QT_QPA_PLATFORM=offscreen MIGRATOR_PROOFS_OUT=.cache/proofs-session-gui.json $(VPY) -m pytest -q $(PYTEST_PAR) -m "not slow" tests/gui

bench: $(STAMP)
	$(VPY) -m benchmarks.run

legacy-envs: $(STAMP)
	$(VPY) -m tests.setup_envs

proto: $(STAMP)
	$(VPY) -m grpc_tools.protoc -Imigrator/core/importers/caffe_proto --python_out=migrator/core/importers/caffe_proto migrator/core/importers/caffe_proto/migrator_caffe.proto

demo: $(STAMP)
	$(VPY) -m resources.make_demos

# Desktop bundle (helper H): one-folder PyInstaller build in dist/Migrator/ (not part of `make test`).
package: $(STAMP)
	$(VPY) -m pip install -q 'pyinstaller>=6'
	$(VPY) -m PyInstaller --noconfirm --distpath dist --workpath build/pyinstaller packaging/migrator.spec
	@du -sh dist/Migrator

package-check:
	python3 packaging/check_bundle.py dist/Migrator

screenshots: $(STAMP)   # docs/images/*.png from the real window (Xvfb when installed)
	PY=$(VPY) bash docs/screenshots.sh

lint: $(STAMP)
	$(VPY) -m ruff check migrator tests benchmarks resources

coverage: $(STAMP)   # docs/proofs.json from the last real-framework session, then docs/coverage.md
	$(VPY) -m tests.proofs
	$(VPY) -m migrator.core.coverage docs/coverage.md

clean:
	rm -rf $(VENV) .pytest_cache build dist
