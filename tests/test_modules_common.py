"""Properties shared by every recalibration module: registry API, shape/dtype table, parameter counts,
gradcheck, numerical safety, gate hooks, batch independence and autocast (torch.compile: tests/test_compile.py)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from nnunet_se.modules import available_recalibrations, create_recalibration, parameter_count

NAMES = ("cse", "sse", "scse", "srm", "fca", "mono")
FLAVOURS = ("paper", "original")
SPATIAL = {2: (5, 6), 3: (3, 4, 5)}
CHANNEL_GATED = ("cse", "scse", "srm", "fca", "mono")


def make(name: str, channels: int, dims: int, flavour: str, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_recalibration(name, channels, dims, flavour, **options)


def randomise(module: torch.nn.Module) -> None:
    """Non-trivial weights everywhere (zero-initialised SRM cfc would hide most of the graph)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)


def test_available_and_none() -> None:
    assert available_recalibrations() == list(NAMES)
    assert create_recalibration(None, 8) is None
    assert create_recalibration("none", 8) is None
    assert parameter_count("none", 8) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "se"}, "valid names: cse, sse, scse, srm, fca, mono, none"),
        ({"name": "cse", "flavour": "keras"}, "valid flavours: paper, original"),
        ({"name": "cse", "ratio": 4}, "valid options: bias, init, reduction"),
        ({"name": "mono", "minmax": "global"}, "minmax must be one of batch, sample"),
        ({"name": "mono", "radii": (2, 2)}, "radii"),
        ({"name": "scse", "combine": "mean"}, "combine must be one of max, add"),
        ({"name": "fca", "channels": 24}, "multiple of 16"),
        ({"name": "fca", "feature_size": (7,)}, "feature_size must be 2 positive ints"),
        ({"name": "cse", "spatial_dims": 1}, "spatial_dims must be 2 or 3"),
        ({"name": "cse", "spatial_dims": 4}, "spatial_dims must be 2 or 3"),
        ({"name": "cse", "channels": 0}, "channels must be a positive int"),
        ({"name": "mono", "radii": (0, 2)}, "radii must be >= 2 distinct positive ints"),
        ({"name": "fca", "feature_size": (0, 7)}, "feature_size must be 2 positive ints"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    args = {"channels": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        create_recalibration(**args)


@pytest.mark.parametrize("name", NAMES)
def test_class_defaults_are_2d_paper(name: str) -> None:
    """Each module class called with channels only is the 2D paper flavour, like create_recalibration's defaults."""
    from nnunet_se.modules.registry import REGISTRY

    module = REGISTRY[name](16)
    assert (module.spatial_dims, module.flavour) == (2, "paper")
    assert module(torch.randn(2, 16, 7, 7)).shape == (2, 16, 7, 7)


@pytest.mark.parametrize(
    "name, options",
    [("mono", {"radii": (1, 2)}), ("fca", {"feature_size": (1, 1)}), ("fca", {"channels": 16}),
     ("cse", {"channels": 1})],
)
def test_smallest_valid_arguments(name: str, options: dict) -> None:
    """The valid side of the limits in test_bad_arguments_raise: radius 1, feature size 1, 16 FCA channels, C = 1."""
    args = {"channels": 32, **options}
    module = create_recalibration(name, spatial_dims=2, **args)
    x = torch.randn(2, args["channels"], 3, 3)
    assert torch.isfinite(module(x)).all()


@pytest.mark.parametrize(
    "name, flavour, dims, batch, channels", list(itertools.product(NAMES, FLAVOURS, (2, 3), (1, 3), (1, 2, 17, 64)))
)
def test_shape_dtype(name: str, flavour: str, dims: int, batch: int, channels: int) -> None:
    if name == "fca" and channels % 16:
        with pytest.raises(ValueError, match="multiple of 16"):
            create_recalibration(name, channels, dims, flavour)
        with pytest.raises(ValueError, match="multiple of 16"):
            parameter_count(name, channels, dims, flavour)
        return
    module = make(name, channels, dims, flavour, feature_size=SPATIAL[dims])
    x = torch.randn(batch, channels, *SPATIAL[dims])
    y = module.train()(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    module.eval()
    x64 = x.double()
    y64 = module.double()(x64)
    assert y64.shape == x.shape and y64.dtype == torch.float64 and torch.isfinite(y64).all()
    assert module.name == name and module.flavour == flavour


@pytest.mark.parametrize(
    "name, flavour, dims, channels", list(itertools.product(NAMES, FLAVOURS, (2, 3), (16, 32, 64, 128, 256, 320)))
)
def test_parameter_count_formula(name: str, flavour: str, dims: int, channels: int) -> None:
    module = create_recalibration(name, channels, dims, flavour)
    actual = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert parameter_count(name, channels, dims, flavour) == actual


@pytest.mark.parametrize(
    "name, flavour, channels, expected",
    [  # the closed forms 2 C h (+ h + C), C + 1, 4 C or 2 + 2 C, + 2 C (BN) worked by hand for the paper widths
        ("cse", "paper", 32, 1072),
        ("cse", "paper", 64, 4192),
        ("cse", "paper", 128, 16576),
        ("cse", "paper", 256, 65920),
        ("cse", "paper", 320, 102880),
        ("cse", "original", 32, 162),
        ("scse", "paper", 32, 1105),
        ("sse", "paper", 32, 33),
        ("srm", "original", 32, 128),
        ("srm", "paper", 32, 66),
        ("fca", "original", 64, 512),
        ("fca", "paper", 64, 4192),
        ("scse", "original", 32, 1105),
        ("sse", "original", 32, 33),
        ("srm", "paper", 256, 514),
        ("mono", "paper", 32, 1136),
        ("mono", "paper", 64, 4320),
        ("mono", "paper", 128, 16832),
        ("mono", "paper", 256, 66432),
        ("mono", "paper", 320, 103520),
    ],
)
def test_parameter_count_examples(name: str, flavour: str, channels: int, expected: int) -> None:
    assert parameter_count(name, channels, 2, flavour) == expected


@pytest.mark.parametrize("name, flavour, dims", list(itertools.product(NAMES, FLAVOURS, (2, 3))))
def test_gradcheck(name: str, flavour: str, dims: int) -> None:
    spatial = (4, 5) if dims == 2 else (3, 4, 4)
    module = make(name, 16, dims, flavour, feature_size=spatial).double().train()
    randomise(module)
    x = torch.randn(2, 16, *spatial, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), fast_mode=True)


INPUTS = {
    "zero": lambda shape: torch.zeros(shape),
    "constant": lambda shape: torch.full(shape, 3.5),
    "negative": lambda shape: torch.full(shape, -2.0),
    "huge": lambda shape: torch.randn(shape) * 1e4,
    "tiny": lambda shape: torch.randn(shape) * 1e-6,
}


@pytest.mark.parametrize("name, flavour, dims, kind", list(itertools.product(NAMES, FLAVOURS, (2, 3), INPUTS)))
def test_no_nan_or_inf(name: str, flavour: str, dims: int, kind: str) -> None:
    """Finite outputs, input and parameter gradients in train mode (batch 1 and 2) and eval mode; zero in -> zero
    out. Zero and constant channels are what a dead ReLU feeds the next module: a NaN input gradient there would
    reach every earlier layer."""
    module = make(name, 16, dims, flavour, feature_size=SPATIAL[dims])
    for train, batch in ((True, 1), (True, 2), (False, 2)):
        module.train(train)
        x = INPUTS[kind]((batch, 16, *SPATIAL[dims])).requires_grad_()
        y = module(x)
        assert torch.isfinite(y).all(), (train, batch)
        if kind == "zero":
            assert torch.equal(y, torch.zeros_like(y))
        grad = torch.autograd.grad(y.sum(), [x, *module.parameters()], allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grad), (train, batch)


@pytest.mark.parametrize("name, flavour, dims", list(itertools.product(NAMES, FLAVOURS, (2, 3))))
def test_gate_hooks(name: str, flavour: str, dims: int) -> None:
    module = make(name, 32, dims, flavour, feature_size=SPATIAL[dims])
    seen: dict[str, torch.Tensor] = {}
    for child in ("gate", "spatial_gate"):
        if hasattr(module, child):
            getattr(module, child).register_forward_hook(lambda m, i, o, child=child: seen.__setitem__(child, o))
    x = torch.randn(3, 32, *SPATIAL[dims])
    y = module(x)
    expected = {"gate"} if name in CHANNEL_GATED else set()
    expected |= {"spatial_gate"} if name in ("sse", "scse") else set()
    assert set(seen) == expected
    if "gate" in seen:
        assert seen["gate"].shape == (3, 32) + (1,) * dims
        assert ((seen["gate"] > 0) & (seen["gate"] < 1)).all()
    if "spatial_gate" in seen:
        assert seen["spatial_gate"].shape == (3, 1, *SPATIAL[dims])
        assert ((seen["spatial_gate"] > 0) & (seen["spatial_gate"] < 1)).all()
    if name in CHANNEL_GATED and name != "scse":  # O-2, O-3: y = gate * x, gate constant over space
        assert torch.equal(y, x * seen["gate"])  # the module's own product, in the same dtype


def _batch_independent(name: str, flavour: str, train: bool, **options) -> bool:
    module = make(name, 16, 2, flavour, feature_size=(6, 6), **options)
    randomise(module)
    module.train(train)
    x = torch.randn(3, 16, 6, 6)
    with torch.no_grad():
        full = module(x)
        single = torch.cat([module(x[i : i + 1]) for i in range(3)])
    # batch-shape dependent float32 vectorisation moves outputs |y| < 5 by a few ulps (< 1e-6); a batch dependence
    # moves them by more than 1e-3
    return torch.allclose(full, single, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "name, flavour, train, options, independent",
    [
        *[(n, f, t, {}, True) for n, f, t in itertools.product(("cse", "sse", "scse", "fca"), FLAVOURS, (True, False))],
        *[("srm", f, False, {}, True) for f in FLAVOURS],
        *[("srm", f, True, {}, False) for f in FLAVOURS],
        ("mono", "paper", False, {"minmax": "sample"}, True),
        ("mono", "paper", False, {"minmax": "batch"}, False),
        ("mono", "paper", True, {"minmax": "sample"}, False),
    ],
)
def test_batch_independence(name: str, flavour: str, train: bool, options: dict, independent: bool) -> None:
    """O-6: f(x)[i] == f(x[i:i+1])[0] exactly where the reference says so, and not elsewhere."""
    assert _batch_independent(name, flavour, train, **options) is independent


@pytest.mark.parametrize("name, flavour, train", list(itertools.product(("cse", "srm"), FLAVOURS, (True, False))))
def test_spatial_permutation_equivariance(name: str, flavour: str, train: bool) -> None:
    """O-7: SE and SRM squeeze a multiset of values, so permuting positions commutes with the module."""
    module = make(name, 8, 2, flavour).train(train)
    randomise(module)
    x = torch.randn(2, 8, 5, 6)
    perm = torch.randperm(30)
    with torch.no_grad():
        y = module(x).flatten(2)[..., perm]
        y_perm = module(x.flatten(2)[..., perm].reshape(x.shape)).flatten(2)
    # float32 means of 30 values in another order: < 30 roundings of relative 6e-8 on |y| < 5 -> < 1e-5
    torch.testing.assert_close(y, y_perm, rtol=0, atol=1e-5)


def _gates(module: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The module's gate outputs (children ``gate`` / ``spatial_gate``) for input ``x``, as float32."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        getattr(module, child).register_forward_hook(lambda m, i, o, child=child: seen.__setitem__(child, o))
        for child in ("gate", "spatial_gate")
        if hasattr(module, child)
    ]
    with torch.no_grad():
        module(x)
    for handle in handles:
        handle.remove()
    return {k: v.float() for k, v in seen.items()}



# bf16 keeps 8 significant bits, so one rounding changes a value by at most 2**-9 relative; we allow u = 2**-8
# (about 4e-3) per rounded operation.
BF16_U = 2.0**-8


@pytest.mark.parametrize("name, flavour, dims", list(itertools.product(NAMES, FLAVOURS, (2, 3))))
def test_bf16_autocast(name: str, flavour: str, dims: int) -> None:
    """Gate values under bf16 autocast against float32 gates of the same (rounded) input.

    Channel gates squeeze and excite in float32 with autocast disabled, so they agree to float32 rounding
    (1e-6). The sSE gate's 1x1 conv runs in bf16: inputs, weights and the logit are rounded (3 roundings, each
    relative u, of at most S = |b| + Σ_c |w_c x_c|), the sigmoid's slope is at most 1/4 and its bf16 result is
    rounded once more (at most u for a value in (0, 1)): |Δgate| <= (3/4) u S + u per position.
    """
    module = make(name, 16, dims, flavour, feature_size=SPATIAL[dims])
    randomise(module)
    x = torch.randn(2, 16, *SPATIAL[dims], generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_low = module(x), module(x.bfloat16())
        gates, gates_low = _gates(module, x), _gates(module, x.bfloat16())
    assert y.dtype == torch.float32 and y_low.dtype == torch.bfloat16
    for low, reference_input in ((gates, x), (gates_low, x.bfloat16().float())):
        reference = _gates(module, reference_input)
        assert set(low) == set(reference) and low
        if "gate" in low:
            torch.testing.assert_close(low["gate"], reference["gate"], rtol=0, atol=1e-6)
        if "spatial_gate" in low:
            conv = F.conv2d if dims == 2 else F.conv3d
            with torch.no_grad():
                scale = conv(reference_input.abs(), module.conv.weight.abs(), module.conv.bias.abs())
            error = (low["spatial_gate"] - reference["spatial_gate"]).abs()
            assert (error <= 0.75 * BF16_U * scale + BF16_U).all(), error.max()
            assert error.max() > 0  # the conv did run in bf16


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name, flavour", list(itertools.product(NAMES, FLAVOURS)))
def test_large_activations_under_autocast(name: str, flavour: str, dtype: torch.dtype, train: bool) -> None:
    """Squeezes run in float32 under autocast. At 224x224 with mean activation 100 an fp16 sum of the paper FCA
    (0, 0) filter (about 2e4 x mean) overflows; gates must stay finite and equal the float32 gates computed from
    the same (rounded) input: exactly for channel gates, to 2**-8 for the sSE gate."""
    import copy

    module = make(name, 16, 2, flavour, feature_size=(224, 224)).train(train)
    randomise(module)
    x = (100 + 10 * torch.randn(2, 16, 224, 224, generator=torch.Generator().manual_seed(0))).to(dtype)
    reference = _gates(copy.deepcopy(module), x.float())
    with torch.autocast("cpu", dtype=dtype):
        low = _gates(copy.deepcopy(module), x)
    assert set(low) == set(reference)
    for child, gate in low.items():
        assert torch.isfinite(gate).all(), child
        if child == "gate":  # autocast disabled: the same float32 operations, so the same values
            assert torch.equal(gate, reference[child]), (child, (gate - reference[child]).abs().max())
        else:  # the sSE conv runs in low precision, but its logits here (|l| > 100) saturate both sigmoids to the
            # same 0 or 1; 2**-8, one low-precision rounding of a gate, flags any unsaturated difference
            torch.testing.assert_close(gate, reference[child], rtol=0, atol=BF16_U)
