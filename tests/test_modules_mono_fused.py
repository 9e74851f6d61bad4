"""Mono's fused Triton path (``nnunet_se.modules.mono_fused``) against the PyTorch path (``AlphaMoments``), run on the
CPU by Triton's interpreter.

The kernels are wrapped for the interpreter per launch (CPU tensors), so ``TRITON_INTERPRET`` need not be set before
``import triton``; it only gates :func:`fused_available` on the CPU and is set per test by the fixture below.

Tolerance: the two paths add the same float32 terms in different orders (a 64-term box sum as rows of 8 here,
power-of-two partial sums there; ``scale·Σ(x - min) + count`` here, ``Σ (1 + scale (x - min))`` there), so they
differ by a few float32 ulps of the measures (relative ~1e-7 each), amplified at most ~10x by the logs, the
divisions by μ and the sums of the backward: ``rtol=1e-5``, with an absolute floor for entries near zero, which carry
the rounding of the larger terms that cancel into them: 1e-5 for the moments (alpha is O(1): a log-log slope, 0 to
~2.5 in 2D; a 1x1 map has alpha = (w2 + w8) ln μ = 0 up to the rounding of the two terms), 1e-5 of the largest
reference entry for gradients.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from nnunet_se.modules import create_recalibration, mono_fused  # noqa: E402
from nnunet_se.modules.mono import AlphaMoments  # noqa: E402
from nnunet_se.modules.mono_fused import alpha_moments_fused, fused_available, fused_option  # noqa: E402

RTOL = 1e-5


@pytest.fixture(autouse=True)
def interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def sample(shape: tuple[int, ...], values: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``"ties"``: integers 0..3 (many entries tie at the min and at the max); ``"normal"``: N(0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, shape, generator=gen).float() if values == "ties" else torch.randn(shape, generator=gen)
    return x.to(dtype).requires_grad_()


def moments_and_grad(fn, x: torch.Tensor, radii, minmax: str, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """``m1, m2`` and the input gradient of ``Σ g1·m1 + g2·m2`` for random ``g1, g2`` (fixed seed)."""
    m1, m2 = fn(x, radii, minmax)
    gen = torch.Generator().manual_seed(seed)
    g1, g2 = torch.randn(m1.shape, generator=gen), torch.randn(m2.shape, generator=gen)
    (grad,) = torch.autograd.grad((m1 * g1).sum() + (m2 * g2).sum(), x)
    return m1, m2, grad


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL, floor: float = 0.0) -> None:
    """``|actual - expected| <= rtol·|expected| + rtol·max(floor, max|expected|)``."""
    atol = rtol * max(floor, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def assert_moments_and_grad_match(actual: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> None:
    """``(m1, m2, grad)`` pairs: moments with an absolute floor of 1e-5 (alpha is O(1)), gradients relative."""
    for got, wanted, floor in zip(actual, expected, (1.0, 1.0, 0.0), strict=True):
        assert_matches(got, wanted, floor=floor)


def reference(x: torch.Tensor, radii, minmax: str) -> tuple[torch.Tensor, torch.Tensor]:
    return AlphaMoments.apply(x, tuple(radii), minmax)


# shape, min-max mode, values, radii: odd sizes, maps smaller than the r=8 box, batch 1, C = 1 and C > 1
EXACTNESS = [
    ((2, 3, 7, 9), "batch", "ties", (2, 4, 8)),
    ((2, 3, 7, 9), "sample", "ties", (2, 4, 8)),
    ((1, 2, 13, 5), "batch", "normal", (2, 4, 8)),
    ((3, 1, 13, 5), "sample", "ties", (2, 4, 8)),
    ((1, 1, 3, 3), "batch", "ties", (2, 4, 8)),
    ((2, 2, 2, 5), "sample", "ties", (2, 4, 8)),
    ((2, 2, 1, 1), "batch", "normal", (2, 4, 8)),
    ((2, 2, 9, 6), "batch", "normal", (3, 5)),
    ((1, 2, 6, 11), "sample", "ties", (2, 8)),
]


@pytest.mark.parametrize("shape, minmax, values, radii", EXACTNESS)
def test_matches_pytorch_path(shape, minmax: str, values: str, radii) -> None:
    x = sample(shape, values)
    fused, expected = moments_and_grad(alpha_moments_fused, x, radii, minmax), moments_and_grad(reference, x, radii,
                                                                                              minmax)
    assert all(t.dtype == torch.float32 for t in fused + expected)
    assert_moments_and_grad_match(fused, expected)
    if values == "ties" and shape[2] * shape[3] > 1:  # the tie shares reach the gradient (not a vacuous case)
        low = x.detach().amin(dim=(0, 2, 3) if minmax == "batch" else (2, 3), keepdim=True)
        assert (fused[2][x.detach() == low] != 0).all()


def test_tiles_smaller_than_the_map(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU's layout: tiles of 8x8 positions whose windows reach into neighbouring tiles and whose rows span two
    maps (here 16 rows over maps of 11 rows), every tile edge inside the r=8 halo."""
    monkeypatch.setattr(mono_fused, "TILE_ELEMENTS", 2)
    monkeypatch.setattr(mono_fused, "TILE_WIDTH", 1)
    x = sample((1, 3, 11, 13), "ties", seed=3)
    assert mono_fused._layout(x, (2, 4, 8))["grid"] == (3, 2)
    fused, expected = (moments_and_grad(fn, x, (2, 4, 8), "batch") for fn in (alpha_moments_fused, reference))
    assert_moments_and_grad_match(fused, expected)


def test_saves_only_x_and_the_extremes() -> None:
    """Saved for backward (``saved_tensors_hooks``): x itself (its storage, its dtype) and the (N, C) min and max."""
    x = sample((2, 3, 6, 7), "normal", dtype=torch.bfloat16)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        alpha_moments_fused(x, (2, 4, 8), "sample")
    assert len(saved) == 3 and saved[0].data_ptr() == x.data_ptr() and saved[0].dtype == torch.bfloat16
    assert [tuple(t.shape) for t in saved[1:]] == [(2, 3), (2, 3)]


@pytest.mark.parametrize("used", ["m1", "m2"])
def test_one_moment_used(used: str) -> None:
    """A loss on one moment only (the other's gradient is absent): same input gradient as the PyTorch path."""
    x = sample((2, 2, 5, 4), "ties", seed=7)
    grads = []
    for fn in (alpha_moments_fused, reference):
        m1, m2 = fn(x, (2, 4, 8), "batch")
        grads.append(torch.autograd.grad((m1 if used == "m1" else m2).sum(), x)[0])
    assert_matches(*grads)


def test_constant_map_interior_alpha_is_two() -> None:
    """Independent oracle: a constant channel has u ≡ 1, alpha = 2 where both boxes lie inside the map, so on a
    32x32 map with the (2, 8) boxes: alpha = 2 on the 25x25 interior (rows/columns 3..27 for left pad 3, right 4)."""
    x = torch.full((1, 1, 32, 32), 5.0)
    m1, _ = alpha_moments_fused(x, (2, 4, 8), "sample")
    rows = torch.arange(32)
    count8 = (torch.minimum(rows + 4, torch.tensor(31)) - torch.clamp(rows - 3, min=0) + 1).double()
    count2 = (torch.minimum(rows + 1, torch.tensor(31)) - rows + 1).double()
    # alpha = (ln μ8 - ln μ2) / (2 ln 2), μ = product of the per-axis counts (zero SAME padding) + 1e-7
    mu8, mu2 = count8[:, None] * count8[None, :] + 1e-7, count2[:, None] * count2[None, :] + 1e-7
    alpha = (mu8.log() - mu2.log()) / (2 * torch.tensor(2.0, dtype=torch.float64).log())
    # the 1e-7 of the measures moves it by (1e-7/64 - 1e-7/4) / ln 4 = -1.7e-8
    assert torch.allclose(alpha[3:28, 3:28], torch.tensor(2.0, dtype=torch.float64), rtol=0, atol=2e-8)
    assert abs(m1.item() - alpha.mean().item()) <= 1e-6  # float32 sums of 1024 values near 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input_computes_in_float32(dtype: torch.dtype) -> None:
    """fp16/bf16 input (an autocast activation): moments in float32 equal to the PyTorch path on the same input; the
    input gradient comes back in the input's dtype, equal to the reference's up to that dtype's rounding."""
    x = sample((2, 2, 9, 7), "normal", dtype=dtype)
    fused, expected = (moments_and_grad(fn, x, (2, 4, 8), "batch") for fn in (alpha_moments_fused, reference))
    assert fused[0].dtype == torch.float32 and fused[2].dtype == dtype
    assert_matches(fused[0], expected[0], floor=1.0)
    assert_matches(fused[1], expected[1], floor=1.0)
    assert_matches(fused[2].float(), expected[2].float(), rtol=torch.finfo(dtype).eps)


@pytest.mark.parametrize(
    "shape, dtype, radii, interpret, available",
    [
        ((2, 3, 8, 8), torch.float32, (2, 4, 8), "1", True),
        ((2, 3, 8, 8), torch.bfloat16, (2, 4, 8), "1", True),
        ((2, 3, 8, 8), torch.float32, (2, 4, 8), None, False),  # CPU without the interpreter
        ((2, 3, 8, 8), torch.float32, (2, 4, 8), "0", False),
        ((2, 3, 4, 8, 8), torch.float32, (2, 4, 8), "1", False),  # 3D: the PyTorch path
        ((2, 3, 8, 8), torch.float64, (2, 4, 8), "1", False),  # float64 keeps float64 on the PyTorch path
        ((2, 3, 8, 8), torch.float32, (1, 2, 3, 6), "1", False),  # four weighted radii
        ((2, 3, 8, 8), torch.float32, (3, 5), "1", True),
    ],
)
def test_fused_available(monkeypatch, shape, dtype, radii, interpret: str | None, available: bool) -> None:
    if interpret is None:
        monkeypatch.delenv("TRITON_INTERPRET")
    else:
        monkeypatch.setenv("TRITON_INTERPRET", interpret)
    assert fused_available(torch.zeros(shape, dtype=dtype), radii) is available


@pytest.mark.parametrize(
    "option, env, expected",
    [
        (None, None, False),  # the default: off
        (None, "", False),
        (None, "0", False),
        (None, "1", True),
        (True, "0", True),  # the option overrides the variable
        (False, "1", False),
        (None, "yes", "NNUNET_SE_MONO_FUSED='yes' must be 0 or 1"),
        ("1", None, "mono: fused must be None, True or False, got '1'"),
    ],
)
def test_fused_option(monkeypatch, option, env: str | None, expected) -> None:
    if env is None:
        monkeypatch.delenv("NNUNET_SE_MONO_FUSED", raising=False)
    else:
        monkeypatch.setenv("NNUNET_SE_MONO_FUSED", env)
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            fused_option(option)
        with pytest.raises(ValueError, match=expected):
            create_recalibration("mono", 4, 2, fused=option)
    else:
        assert fused_option(option) is expected
        assert create_recalibration("mono", 4, 2, fused=option).fused is expected


@pytest.mark.parametrize("dims, minmax, fused_calls", [(2, "batch", 1), (2, "sample", 1), (3, "batch", 0)])
def test_module_uses_fused_path_where_available(monkeypatch, dims: int, minmax: str, fused_calls: int) -> None:
    """``Mono(fused=True)``: the fused op in 2D, the PyTorch path in 3D; same gate and input gradient as
    ``fused=False`` either way (train mode: batch statistics, running-statistic update)."""
    calls = []
    original = mono_fused.alpha_moments_fused
    monkeypatch.setattr(mono_fused, "alpha_moments_fused", lambda *a: calls.append(1) or original(*a))
    x = sample((2, 4) + (6,) * dims, "normal", seed=5)
    results = []
    for fused in (True, False):
        torch.manual_seed(0)
        module = create_recalibration("mono", 4, dims, minmax=minmax, fused=fused).train()
        out = module(x)
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        results.append((out, grad, module.bn.running_mean, module.bn.running_var))
    assert len(calls) == fused_calls
    for actual, wanted in zip(*results, strict=True):
        assert_matches(actual, wanted)


def test_compiles_as_one_graph() -> None:
    """``Mono(fused=True)`` under ``torch.compile(fullgraph=True)``, dynamo + AOTAutograd (``aot_eager``: forward and
    the registered backward traced): one graph in which the fused op is a single node, no graph break; output and
    input gradient equal to eager."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch.manual_seed(0)
    module = create_recalibration("mono", 3, 2, fused=True).train()
    x = sample((2, 3, 5, 6), "ties")
    graphs = []

    def backend(gm: torch.fx.GraphModule, inputs):
        graphs.append([node.target for node in gm.graph.nodes])
        return gm.forward

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(module, backend=counter, fullgraph=True)
    out = compiled(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    torch.manual_seed(0)
    eager = create_recalibration("mono", 3, 2, fused=True).train()
    expected = eager(x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    assert counter.frame_count == 1
    assert_matches(out.detach(), expected.detach())
    assert_matches(grad, expected_grad)
    torch._dynamo.reset()
    torch.compile(module, backend=backend, fullgraph=True)(x)
    op = torch.ops.nnunet_se.mono_alpha_moments
    assert len(graphs) == 1 and sum(target in (op, op.default) for target in graphs[0]) == 1


def test_opcheck() -> None:
    """``torch.library.opcheck`` of both ops: schema, fake (meta) implementation, autograd registration, AOT
    dispatch with dynamic shapes."""
    x = sample((2, 2, 3, 4), "ties")
    torch.library.opcheck(torch.ops.nnunet_se.mono_alpha_moments.default, (x, [2, 4, 8], "batch"))
    low, high = (torch.full((2, 2), v) for v in (0.0, 3.0))
    g = torch.randn(2, 2)
    torch.library.opcheck(torch.ops.nnunet_se.mono_alpha_moments_backward.default,
                          (x.detach(), low, high, g, g, [2, 4, 8], "sample"))


def test_kernels_compile_for_an_h100(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No GPU here: the three kernels go through Triton's full CUDA pipeline (TTIR -> PTX -> ptxas cubin) for sm_90
    (H100), with a fp16 input, so the compiled path (constexpr branches, reductions, masks) is at least valid code."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # compile for real, not from an earlier run's cache
    measures, transposed, shares = mono_fused.kernels(False)
    radii = {"R1": 2, "L1": 0, "R2": 8, "L2": 3, "BLOCK_H": 32, "BLOCK_W": 32}

    def signature(kernel) -> dict[str, str]:
        """Pointers fp32 (x fp16), the sizes i32, other scalars fp32, compile-time arguments constexpr."""
        types = {"x_ptr": "*fp16", **dict.fromkeys(("H", "W", "NCH", "size", "total"), "i32")}
        return {p.name: "constexpr" if p.is_constexpr else types.get(p.name, "*fp32" if p.name.endswith("_ptr")
                                                                     else "fp32") for p in kernel.params}

    builds = [
        (measures, {**radii, "BACKWARD": False}),
        (measures, {**radii, "BACKWARD": True}),
        (transposed, radii),
        (shares, {"BLOCK": 1024}),
    ]
    for kernel, constants in builds:
        source = ASTSource(kernel, signature(kernel), constexprs=constants)
        binary = compile(source, target=GPUTarget("cuda", 90, 32))
        assert ".target sm_90" in binary.asm["ptx"] and len(binary.asm["cubin"]) > 0
