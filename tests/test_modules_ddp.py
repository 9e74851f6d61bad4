"""Multi-process training: Mono and SRM under ``SyncBatchNorm`` + ``DistributedDataParallel`` (what
``nnUNetv2_train -num_gpus N`` does) equal one process holding the whole batch.

Oracle: the same module (same seed, plain ``BatchNorm``) run in this process on the whole batch. Two gloo processes
on the CPU each hold half of it (a ``file://`` rendezvous in ``tmp_path``: no port to race for) and average their
parameter gradients with an all-reduce, as DDP's reducer does (``DistributedDataParallel`` itself refuses
``SyncBatchNorm`` on CPU modules). Compared in
float64: forward outputs, input gradients, parameter gradients (DDP averages them over the processes, so they
equal the single-process gradient of the summed loss divided by 2) and running statistics.
One spawn runs every case (about 5-10 s, most of it starting the two interpreters).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from nnunet_se.modules import create_recalibration
from nnunet_se.modules.common import sync_group

WORLD = 2
SHAPE = (4, 3, 9, 11)  # global batch 4: two samples per process
CASES = {  # name: (module, flavour, options)
    "mono paper (batch min-max)": ("mono", "paper", {}),
    "mono sample min-max": ("mono", "paper", {"minmax": "sample"}),
    "srm paper": ("srm", "paper", {}),
    "srm original": ("srm", "original", {}),
}
# float64 throughout; the two runs differ only in the order of the sums (per process, then across processes):
# relative differences of a few ulps (1e-16) times the condition of the batch norm (1/std of about 1e-2) -> 1e-12
TOL = {"rtol": 1e-9, "atol": 1e-11}


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed input and loss weights. The channel minimum -6 and maximum 6 are each tied between a sample of the
    first process and one of the second, so Mono's min/max gradient is shared across processes."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(SHAPE, dtype=torch.float64, generator=gen).clamp(-3, 3)
    x[0, :, 0, 0] = x[3, :, 2, 2] = -6.0
    x[1, :, 1, 1] = x[2, :, 4, 4] = 6.0
    return x, torch.randn(SHAPE, dtype=torch.float64, generator=gen)


def build(case: str) -> nn.Module:
    name, flavour, options = CASES[case]
    torch.manual_seed(0)
    module = create_recalibration(name, SHAPE[1], 2, flavour, **options).double().train()
    if name == "srm":  # non-zero cfc (the original's is 0 at init, which would leave z and its gradient trivial)
        with torch.no_grad():
            module.cfc.copy_(torch.linspace(-1.0, 1.5, module.cfc.numel(), dtype=torch.float64).view_as(module.cfc))
    return module


def step(module: nn.Module, x: torch.Tensor, weights: torch.Tensor, forward: Callable | None = None) -> dict:
    """One train forward (``forward``, default ``module``) + backward of ``(y · weights).sum()``; the values to
    compare."""
    x = x.clone().requires_grad_()
    y = (module if forward is None else forward)(x)
    (y * weights).sum().backward()
    return {"y": y.detach(), "x_grad": x.grad,
            **{f"grad {n}": p.grad for n, p in module.named_parameters()},
            **{f"buffer {n}": b.clone() for n, b in module.named_buffers()}}


def worker(rank: int, init_file: str, out: str, cases: list[str], compiled: bool) -> None:
    """Each case on this process's half of the batch, eager or ``torch.compile``d (aot_eager, one graph)."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        x, weights = batch()
        part = slice(rank * SHAPE[0] // WORLD, (rank + 1) * SHAPE[0] // WORLD)
        results = {}
        for case in cases:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(build(case))
            assert sync_group(module.bn) is not None
            forward = torch.compile(module, backend="aot_eager", fullgraph=True) if compiled else None
            results[case] = step(module, x[part], weights[part], forward)
            for key, grad in results[case].items():
                if key.startswith("grad "):  # DDP's gradient average (its wrapper refuses CPU SyncBatchNorm)
                    dist.all_reduce(grad)
                    grad /= WORLD
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def spawn(folder: Path, cases: list[str], compiled: bool) -> list[dict]:
    mp.spawn(worker, args=(str(folder / "rendezvous"), str(folder), cases, compiled), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def distributed(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return spawn(tmp_path_factory.mktemp("ddp"), list(CASES), compiled=False)


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_equal_one(distributed: list[dict], case: str) -> None:
    assert_equal_to_one_process(distributed, case)


@pytest.mark.slow
def test_compiled_two_processes_equal_one(tmp_path: Path) -> None:
    """Under ``torch.compile`` (fullgraph, aot_eager: dynamo and AOTAutograd trace the collectives and the
    hand-written backward) the synchronised paths still equal one process. About a minute (compiles)."""
    cases = ["mono paper (batch min-max)", "srm paper"]
    distributed = spawn(tmp_path, cases, compiled=True)
    for case in cases:
        assert_equal_to_one_process(distributed, case)


def assert_equal_to_one_process(distributed: list[dict], case: str) -> None:
    x, weights = batch()
    module = build(case)
    assert sync_group(module.bn) is None  # no process group here: local statistics
    expected = step(module, x, weights)
    assert set(distributed[0][case]) == set(expected)
    for key, value in expected.items():
        if key.startswith(("grad ", "buffer ")):  # every process ends with the same averaged gradients, statistics
            value = value / WORLD if key.startswith("grad ") else value
            for d in distributed:
                torch.testing.assert_close(d[case][key], value, **TOL, msg=f"{case}: {key}")
        else:  # per-sample tensors: each process holds its half
            got = torch.cat([d[case][key] for d in distributed])
            torch.testing.assert_close(got, value, **TOL, msg=f"{case}: {key}")


def test_local_statistics_differ(distributed: list[dict]) -> None:
    """The other side: statistics of one half of the batch (no synchronisation) give other outputs and running
    statistics, so the equality above is not trivial."""
    x, weights = batch()
    for case in CASES:
        module = build(case)
        local = step(module, x[: SHAPE[0] // WORLD], weights[: SHAPE[0] // WORLD])
        assert not torch.allclose(local["y"], distributed[0][case]["y"], rtol=1e-3, atol=1e-6), case
        assert not torch.allclose(local["buffer bn.running_var"], distributed[0][case]["buffer bn.running_var"]), case
