"""Oracles for trainer tests: what a ``-tr`` name promises, checked on the network the trainer builds.

A name ``nnUNetTrainer[Paper]<Module>[NoSkip][_original]`` promises one ``<Module>`` (the module class of
:mod:`nnunet_se.modules`) after every encoder stage but the bottleneck, in the ``original`` flavour for
``_original`` names and the ``paper`` flavour otherwise; no module for the plain ``nnUNetTrainer[Paper]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from nnunet_se.modules.registry import REGISTRY

_NAME_RE = re.compile(r"nnUNetTrainer(?P<paper>Paper)?(?P<module>[A-Za-z]*?)(?P<noskip>NoSkip)?"
                      r"(?P<original>_original)?")


@dataclass(frozen=True)
class NamePromise:
    module: type[nn.Module] | None  # module class named in the trainer name
    flavour: str
    skip_connections: bool
    paper_network: bool


def promise(trainer: str) -> NamePromise:
    """What the trainer name ``trainer`` promises (AssertionError for a name outside the convention)."""
    match = _NAME_RE.fullmatch(trainer)
    assert match, trainer
    classes = {cls.__name__.lower(): cls for cls in REGISTRY.values()}
    module = classes[match["module"].lower()] if match["module"] else None
    return NamePromise(module, "original" if match["original"] else "paper", not match["noskip"],
                       bool(match["paper"]))


def assert_network_keeps_the_promise(trainer: str, network: nn.Module) -> None:
    """The module class named in ``trainer`` sits in every encoder stage but the last, once, with the flavour of
    the name; no recalibration module at all in a plain U-Net."""
    expected = promise(trainer)
    found = [m for m in network.modules() if isinstance(m, tuple(REGISTRY.values()))]
    if expected.module is None:
        assert found == [], trainer
        return
    stages = network.encoder.stages
    per_stage = [[m for m in stage.modules() if isinstance(m, tuple(REGISTRY.values()))] for stage in stages]
    assert [len(s) for s in per_stage] == [1] * (len(stages) - 1) + [0], trainer
    assert len(found) == len(stages) - 1  # nothing outside the encoder
    for (module,) in per_stage[:-1]:
        assert type(module) is expected.module, (trainer, type(module))
        assert module.flavour == expected.flavour, trainer
