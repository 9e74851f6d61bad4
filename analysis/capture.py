"""Forward hooks on every recalibration module's gate: one excitation vector per case and depth.

The hooked child is the module's channel ``gate`` (output ``(N, C, 1, ...)``: cSE, SRM, FCA, Mono, and scSE's
channel branch) or, for a module with only a spatial gate (sSE), its ``spatial_gate`` (output ``(N, 1, *S)``).
Every gate output is summarised per channel by its mean over the spatial dims: a channel gate's singleton dims
change nothing, an sSE gate becomes one value per tile (its mean spatial excitation). Each of the N rows is one tile
(nnU-Net's sliding window predicts one tile per call); the recorder sums the tile vectors of the current case and
returns their mean when the case ends, so memory holds only the vectors (``C`` floats per depth and case), never
feature maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nnunet_se.errors import UserError

GATE_CHILDREN = ("gate", "spatial_gate")  # preference order: the channel gate when a module has both (scSE)


def gate_child(network: nn.Module, path: str) -> str:
    """Name of the child of module ``path`` whose output is recorded (see the module docstring)."""
    module = network.get_submodule(path)
    for name in GATE_CHILDREN:
        if isinstance(getattr(module, name, None), nn.Module):
            return name
    raise UserError(f"{path}: {type(module).__name__} has neither a channel `gate` nor a `spatial_gate` to record")


class GateRecorder:
    """Context manager: hooks ``<path>.<gate child>`` for each module path (depth l = index + 1, shallowest first);
    ``gate_names[l - 1]`` is the hooked child (:data:`GATE_CHILDREN`).

    Use ``start_case()`` before a case's forward passes and ``finish_case()`` after them.
    """

    def __init__(self, network: nn.Module, module_paths: Sequence[str]):
        if not module_paths:
            raise ValueError("the network has no recalibration modules to record")
        self.gate_names = [gate_child(network, p) for p in module_paths]
        self.gates = [network.get_submodule(f"{p}.{n}") for p, n in zip(module_paths, self.gate_names, strict=True)]
        self.channels: dict[int, int | None] = {d: None for d in range(1, len(self.gates) + 1)}
        self._sums: dict[int, torch.Tensor | None] = {}
        self._tiles: dict[int, int] = {}
        self._handles: list = []

    def __enter__(self) -> GateRecorder:
        for depth, gate in enumerate(self.gates, start=1):
            self._handles.append(gate.register_forward_hook(self._hook(depth)))
        self.start_case()
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, depth: int):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            rows = output.detach().flatten(2).mean(2).sum(0, dtype=torch.float64)  # (C,), summed over tiles
            current = self._sums[depth]
            self._sums[depth] = rows if current is None else current + rows
            self._tiles[depth] += output.shape[0]

        return hook

    def start_case(self) -> None:
        self._sums = {d: None for d in self.channels}
        self._tiles = {d: 0 for d in self.channels}

    def finish_case(self) -> tuple[dict[int, np.ndarray], int]:
        """Per depth the mean gate vector over this case's tiles (float32, shape (C,)), and the tile count."""
        if any(s is None for s in self._sums.values()):
            missing = [d for d, s in self._sums.items() if s is None]
            raise RuntimeError(f"no gate output recorded at depth(s) {missing} for this case")
        tiles = set(self._tiles.values())
        if len(tiles) != 1:
            raise RuntimeError(f"gates fired a different number of times per depth: {self._tiles}")
        n = tiles.pop()
        vectors = {d: (s / n).cpu().numpy().astype(np.float32) for d, s in self._sums.items()}
        for d, v in vectors.items():
            self.channels[d] = v.shape[0]
        self.start_case()
        return vectors, n


class ExcitationStream:
    """Collects one vector per case and depth; memory grows by exactly those vectors."""

    def __init__(self) -> None:
        self.case_ids: list[str] = []
        self.tiles: list[int] = []
        self.rows: dict[int, list[np.ndarray]] = {}

    def add(self, case_id: str, vectors: dict[int, np.ndarray], tiles: int) -> None:
        self.case_ids.append(case_id)
        self.tiles.append(tiles)
        for depth, vector in vectors.items():
            self.rows.setdefault(depth, []).append(vector)

    def arrays(self) -> dict[int, np.ndarray]:
        """``{depth: (cases, channels)}`` float32."""
        return {d: np.stack(v).astype(np.float32) for d, v in sorted(self.rows.items())}
