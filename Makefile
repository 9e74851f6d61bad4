# One-command set-up: every target (re)builds .venv when pyproject.toml changes.
# torch/torchvision are pinned first: PyPI's torchvision does not load beside the CPU torch 2.13.0
# that some machines carry, and nnU-Net's trainer search imports timm -> torchvision (docs/install.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nnunet-se-installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: venv test lint demo bench clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]' $(TORCH_PINS)
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest -n 2 --dist loadgroup --durations=25

demo: $(STAMP)
	$(BIN)/nnunet-se demo

bench: $(STAMP)
	$(BIN)/python benchmarks/module_overhead.py

clean-venv:
	rm -rf $(VENV)

# mutation testing of the core modules (benchmarks/mutation.py): a seeded sample of MUTANTS mutants, 0 = all
MUTANTS ?= 150
.PHONY: mutation
mutation: $(STAMP)
	nice -n 15 $(BIN)/python benchmarks/mutation.py --sample $(MUTANTS)
