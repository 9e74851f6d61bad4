# One-command set-up: every target (re)builds .venv when pyproject.toml changes.
# torch/torchvision are pinned first: PyPI's torchvision does not load beside the CPU torch 2.13.0
# that some machines carry, and nnU-Net's trainer search imports timm -> torchvision (docs/install.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Strict editable install (setuptools' editable_mode=strict): build/__editable__*/nnunet_se/ is a tree of links to
# the source files that editors and type checkers resolve like any package (docs/install.md). A new or removed
# module file needs a re-install, so the stamp's name carries a checksum of the list of module files.
MODULE_FILES_ID := $(shell find nnunet_se conversion trainers analysis -name '*.py' -not -path '*/__pycache__/*' \
	| LC_ALL=C sort | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.nnunet-se-installed-$(MODULE_FILES_ID)
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: venv test lint demo bench wheel-check clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]' $(TORCH_PINS) --config-settings editable_mode=strict
	rm -f $(VENV)/.nnunet-se-installed*
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest -n 2 --dist loadgroup --durations=25

demo: $(STAMP)
	$(BIN)/nnunet-se demo

wheel-check: $(STAMP)
	bash .ci/wheel_check

bench: $(STAMP)
	$(BIN)/python benchmarks/module_overhead.py

clean-venv:
	rm -rf $(VENV)

# mutation testing of the core modules (benchmarks/mutation.py): a seeded sample of MUTANTS mutants, 0 = all
MUTANTS ?= 150
.PHONY: mutation
mutation: $(STAMP)
	nice -n 15 $(BIN)/python benchmarks/mutation.py --sample $(MUTANTS)
