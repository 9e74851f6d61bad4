"""Boundaries of ``nnunet_se/modules/common.py`` that the mutation sample (benchmarks/results/mutation_holdout.md)
found unpinned: ``sync_group`` treats a process group of one process as no group (SyncBatchNorm's own rule)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist
from torch import nn

from nnunet_se.modules import common
from nnunet_se.modules.common import sync_group


@pytest.fixture
def one_process_group(tmp_path: Path):
    """The default process group of this process alone (gloo, world size 1), destroyed afterwards."""
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("torch.distributed unavailable or already initialised")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        yield dist.group.WORLD
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("world", "synced"), [(1, False), (2, True)])
def test_sync_group_needs_more_than_one_process(one_process_group: object, world: int, synced: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``SyncBatchNorm`` synchronises only when its group has more than one process (torch's own check); a group of
    one (``nnUNetv2_train -num_gpus 1`` after ``init_process_group``) is the local batch: no group, so Mono keeps
    its fused path and no collective runs. World size 1 (a real one-process group) -> None; world size 2 (the
    same group reporting 2 processes) -> the group."""
    if world != 1:
        monkeypatch.setattr(common.dist, "get_world_size", lambda group=None: world)
    assert dist.get_world_size() == world
    bn = nn.SyncBatchNorm(4).train()
    assert sync_group(bn) is (one_process_group if synced else None)
    assert sync_group(bn.eval()) is None  # eval: running statistics, never a group
