# bdbench — `make demo` runs the default suite and writes leaderboards/demo (not committed); `make test` runs the
# tests; `make leaderboard` runs the full suite and writes the committed leaderboards/default.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# torch and torchvision are pinned to the releases that install from this machine's disk (see README).
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-slow bench leaderboard leaderboard-adaptive install clean-venv gpu-check browser world-study

# The demo needs core and plugins only; the tests add their extras (pytest, selenium, Ray: the Ray wheel alone is
# a large download) on top, so a cold `make demo` does not wait for them. The venv's own pip (23.2 on Python
# 3.11) installs the editable packages; it is not upgraded, which would be one more download.
$(STAMP): pyproject.toml $(foreach p,$(PLUGINS),$(p)/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e . $(foreach p,$(PLUGINS),-e $(p))
	touch $(STAMP)

# The tests also install the plugin guide's two example packages, as the guide says to, so that the contract
# tests cover them (they iterate over every registered plugin) from a fresh clone, not only after
# tests/test_docs_example.py has installed them.
EXAMPLES := $(wildcard docs/examples/*/pyproject.toml)
$(TEST_STAMP): $(STAMP) $(EXAMPLES)
	$(BIN)/pip install -q -e ".[test,ray]" $(foreach p,$(EXAMPLES),-e $(dir $(p)))
	touch $(TEST_STAMP)

install: $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/bdbench run --suite default --leaderboard leaderboards/demo

# The browser test opens the HTML leaderboard in Debian's headless Chromium (never a downloaded build).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
		($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver)

test: $(TEST_STAMP) browser
	$(BIN)/python -m pytest -q

test-slow: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(TEST_STAMP)
	mkdir -p .benchmarks
	$(BIN)/python -m pytest -q -m benchmark --benchmark-enable --benchmark-only tests/benchmarks \
		--benchmark-json=.benchmarks/latest.json
	$(BIN)/python -c "import json; [print(f\"{b['name']}: {b['extra_info']}\") for b in json.load(open('.benchmarks/latest.json'))['benchmarks']]"

# The committed leaderboard: every method, 3 seeds (1 h 45 min to 2 h cold on a 2-core CPU), then the adaptive
# suite's page (adaptive.md) into the same folder (1 h 17 min more on 2026-12-04; 1 h 43 min on 2026-12-05 after
# only the demo, whose store holds 15 of its 201 cells).
leaderboard: $(STAMP)
	$(BIN)/bdbench run --suite full
	$(BIN)/bdbench leaderboard --suite full --out leaderboards/default --format markdown,html,latex,csv
	$(MAKE) leaderboard-adaptive

leaderboard-adaptive: $(STAMP)
	$(BIN)/bdbench run --suite adaptive
	$(BIN)/bdbench leaderboard --suite adaptive --out leaderboards/default --pages adaptive --format markdown,html,latex

# One GPU: a paper-shaped grid (ViT-B-32 architecture, 224-px generated data), fine-tune and zero-shot images/s and
# peak GPU memory, in a scratch home so that nothing is read from an earlier run.
gpu-check: $(STAMP)
	BDBENCH_HOME=$$(mktemp -d) $(BIN)/python -m bench_core.gpucheck --suite gpu_check

clean-venv:
	rm -rf $(VENV)

# The regime study behind the scene world (docs/world.md): pretrain its clean model (resumable; imported from
# bench_core/assets/clean when shipped), then stage A's twelve fine-tune regimes, then the study's tables.
world-study: $(STAMP)
	$(BIN)/bdbench pretrain --suite scene
	for s in docs/world/suites/a[0-9][0-9].yaml; do $(BIN)/bdbench run --suite $$s || exit 1; done
	$(BIN)/python docs/world/study.py docs/world/suites/a[0-9][0-9].yaml docs/world/suites/d-any.yaml docs/world/suites/d-binding.yaml docs/world/suites/a07.b.yaml docs/world/suites/a12.b.yaml > docs/world/results.md
