"""Injection of recalibration modules into d-n-a U-Nets and the no-skip decoder (nnunet_se.injection)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from dynamic_network_architectures.building_blocks.helper import convert_dim_to_conv_op, get_matching_instancenorm
from torch import nn

import nnunet_se.modules as modules_package
from nnunet_se.injection import RecalibrationSlot, inject_recalibration, recalibration_paths
from nnunet_se.modules import parameter_count
from nnunet_se.no_skip import NoSkipUNetDecoder, remove_skip_connections

FEATURES = (16, 32, 64)  # FCA needs multiples of 16
STRIDES = (1, 2, 2)
MODULES = ("cse", "sse", "scse", "srm", "fca", "mono")
ARCHITECTURES = ("plain", "resenc")
# architecture -> (dotted path of the inserted module at depth 1, at depth 2)
EXPECTED_PATHS = {
    "plain": ["encoder.stages.0.0.convs.2.module", "encoder.stages.1.0.convs.2.module"],
    "resenc": ["encoder.stages.0.blocks.1.module", "encoder.stages.1.blocks.2.module"],
}


def small_unet(arch: str, dims: int, deep_supervision: bool = True) -> nn.Module:
    """3-stage U-Net (16/32/64 features), 3 input channels, 2 classes, as nnU-Net's plans would build it."""
    conv = convert_dim_to_conv_op(dims)
    common = dict(input_channels=3, n_stages=3, features_per_stage=list(FEATURES), conv_op=conv, kernel_sizes=3,
                  strides=list(STRIDES), num_classes=2, n_conv_per_stage_decoder=1, conv_bias=True,
                  norm_op=get_matching_instancenorm(conv), norm_op_kwargs={"eps": 1e-5, "affine": True},
                  nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=deep_supervision)
    if arch == "plain":
        net = PlainConvUNet(n_conv_per_stage=2, **common)
    else:
        net = ResidualEncoderUNet(n_blocks_per_stage=[1, 2, 2], **common)
    net.apply(net.initialize)
    return net


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def observed_stage_sizes(net: nn.Module, patch: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Spatial output size of every encoder stage, recorded by forward hooks during a real forward pass."""
    sizes: list[tuple[int, ...]] = []
    handles = [
        stage.register_forward_hook(lambda m, args, out: sizes.append(tuple(out.shape[2:])))
        for stage in net.encoder.stages
    ]
    with torch.no_grad():
        net.encoder(torch.zeros(1, 3, *patch))
    for handle in handles:
        handle.remove()
    return sizes


CASES = [(m, a, d) for m in MODULES for a in ARCHITECTURES for d in (2, 3)]


@pytest.mark.parametrize(("name", "arch", "dims"), CASES)
def test_inject_by_name(name: str, arch: str, dims: int) -> None:
    torch.manual_seed(0)
    patch = (32, 32) if dims == 2 else (16, 16, 16)
    net = small_unet(arch, dims)
    sizes = observed_stage_sizes(net, patch)
    keys_before = set(net.state_dict())
    params_before = n_params(net)
    fmap_before = net.compute_conv_feature_map_size(patch)

    paths = inject_recalibration(net, name, patch_size=patch)

    assert paths == EXPECTED_PATHS[arch]
    assert recalibration_paths(net) == paths
    for path in paths:
        module = net.get_submodule(path)
        assert module.name == name and module.flavour == "paper"
    expected_delta = sum(parameter_count(name, c, dims) for c in FEATURES[:-1])
    assert n_params(net) - params_before == expected_delta
    assert keys_before <= set(net.state_dict())  # existing weights keep their keys
    # d-n-a's VRAM estimate halves sizes with //, exact for these even patches: each slot adds C x its stage's map
    expected_fmap = sum(int(np.prod([c, *sizes[s]])) for s, c in enumerate(FEATURES[:-1]))
    assert net.compute_conv_feature_map_size(patch) - fmap_before == expected_fmap

    x = torch.randn(2, 3, *patch)
    out = net(x)  # deep supervision: full resolution first
    assert [tuple(o.shape) for o in out] == [(2, 2, *patch), (2, 2, *sizes[1])]
    net.decoder.deep_supervision = False
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, 2, *patch)


@pytest.mark.parametrize(
    ("arch", "patch"),
    [
        ("plain", (48, 40)),
        ("resenc", (48, 40)),
        ("resenc", (16, 24, 20)),
        # odd sizes: a stride-2 conv with same padding gives ceil(size / 2), not size // 2 (d-n-a's residual
        # blocks cannot run odd sizes at all: their pooled skip path floors while the strided conv rounds up)
        ("plain", (33, 45)),
        ("plain", (17, 9, 13)),
    ],
)
def test_modules_receive_stage_feature_size(monkeypatch: pytest.MonkeyPatch, arch: str, patch: tuple) -> None:
    """Each module is built for the spatial size that forward hooks observe at its stage's output, and the FCA
    filters match the maps the module then sees (no adaptive pooling in training)."""
    calls = []
    real = modules_package.create_recalibration

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(modules_package, "create_recalibration", spy)
    net = small_unet(arch, len(patch))
    observed = observed_stage_sizes(net, patch)
    if any(p % 2 for p in patch):  # the case distinguishes the exact size from size // stride
        assert observed[1] != tuple(p // 2 for p in patch)
    paths = inject_recalibration(net, "fca", "original", patch_size=patch)
    assert [(a, k["feature_size"]) for a, k in calls] == [
        (("fca", c, len(patch), "original"), size) for c, size in zip(FEATURES[:-1], observed, strict=False)
    ]
    seen: list[tuple[int, ...]] = []
    for path in paths:
        net.get_submodule(path).register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[2:])))
    with torch.no_grad():
        net.encoder(torch.zeros(1, 3, *patch))
    assert seen == observed[:-1] == [net.get_submodule(path).dct_size for path in paths]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_inject_factory_sees_channels_and_dims(arch: str) -> None:
    seen = []

    def factory(channels: int, spatial_dims: int) -> nn.Module:
        seen.append((channels, spatial_dims))
        return nn.Identity()

    net = small_unet(arch, 3)
    paths = inject_recalibration(net, factory)
    assert seen == [(16, 3), (32, 3)]
    assert all(isinstance(net.get_submodule(p), nn.Identity) for p in paths)


def test_inject_into_bare_encoder() -> None:
    encoder = small_unet("plain", 2).encoder
    assert inject_recalibration(encoder, "cse") == ["stages.0.0.convs.2.module", "stages.1.0.convs.2.module"]


def test_inject_none_changes_nothing() -> None:
    net = small_unet("plain", 2)
    before = set(net.state_dict())
    assert inject_recalibration(net, "none") == []
    assert set(net.state_dict()) == before


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (lambda: nn.Sequential(nn.Conv2d(3, 3, 1)), {}, TypeError, "cannot inject into Sequential"),
        (lambda: small_unet("plain", 2), {"feature_size": (4, 4)}, ValueError, "pass patch_size"),
        (lambda: small_unet("plain", 2), {"patch_size": (8, 8, 8)}, ValueError, "does not match a 2D network"),
        (lambda: small_unet("resenc", 2), {"patch_size": (33, 45)}, ValueError, "does not run through ResidualEncoder"),
        (lambda: small_unet("plain", 2), {"module": "nope"}, ValueError, "nope"),
        (lambda: small_unet("plain", 2), {"flavour": "nope"}, ValueError, "nope"),
    ],
)
def test_inject_rejects_bad_input(make, kwargs, error, match) -> None:
    kwargs = {"module": "cse", **kwargs}
    with pytest.raises(error, match=match):
        inject_recalibration(make(), **kwargs)


def test_inject_twice_is_an_error() -> None:
    net = small_unet("resenc", 2)
    inject_recalibration(net, "cse")
    with pytest.raises(ValueError, match="already contains"):
        inject_recalibration(net, "srm")


def test_factory_does_not_take_options() -> None:
    with pytest.raises(ValueError, match="only apply to registry names"):
        inject_recalibration(small_unet("plain", 2), lambda c, d: nn.Identity(), reduction=4)


def test_slot_reports_its_feature_map() -> None:
    slot = RecalibrationSlot(nn.Identity(), 8)
    assert slot.compute_conv_feature_map_size((5, 6)) == 8 * 5 * 6


@pytest.mark.parametrize(("arch", "dims"), [(a, d) for a in ARCHITECTURES for d in (2, 3)])
def test_no_skip_decoder_ignores_skips(arch: str, dims: int) -> None:
    torch.manual_seed(0)
    patch = (32, 32) if dims == 2 else (16, 16, 16)
    net = small_unet(arch, dims)
    sizes = observed_stage_sizes(net, patch)
    inject_recalibration(net, "cse")
    params_before = n_params(net)
    remove_skip_connections(net)
    assert isinstance(net.decoder, NoSkipUNetDecoder)
    # the first conv of each decoder stage loses the skip half of its input channels (+ nothing else)
    kernel = 3**dims
    assert params_before - n_params(net) == sum(c * c * kernel for c in FEATURES[:-1])
    net.eval()
    x = torch.randn(2, 3, *patch)
    with torch.no_grad():
        skips = net.encoder(x)
        out = net.decoder(skips)
        noisy_skips = [torch.randn_like(s) * 10 for s in skips[:-1]] + [skips[-1]]
        out_noisy = net.decoder(noisy_skips)
        out_new_bottleneck = net.decoder(skips[:-1] + [torch.randn_like(skips[-1])])
    assert [tuple(o.shape) for o in out] == [(2, 2, *patch), (2, 2, *sizes[1])]
    for a, b in zip(out, out_noisy, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(out[0], out_new_bottleneck[0])
    assert net.compute_conv_feature_map_size(patch) > 0


def test_skip_connections_matter_in_the_stock_decoder() -> None:
    """Control for the no-skip test: the same perturbation changes the stock decoder's output."""
    torch.manual_seed(0)
    net = small_unet("plain", 2).eval()
    with torch.no_grad():
        skips = net.encoder(torch.randn(1, 3, 32, 32))
        out = net.decoder(skips)[0]
        out_noisy = net.decoder([torch.randn_like(s) for s in skips[:-1]] + [skips[-1]])[0]
    assert not torch.allclose(out, out_noisy)


def test_remove_skip_connections_rejects_other_decoders() -> None:
    net = small_unet("plain", 2)
    remove_skip_connections(net)
    with pytest.raises(TypeError, match="expected a .decoder of type UNetDecoder"):
        remove_skip_connections(net)


@pytest.mark.parametrize("name", MODULES)
def test_autocast_and_compile(name: str) -> None:
    """bf16 autocast forward and a traced ``torch.compile`` (eager backend: dynamo capture only) still work."""
    torch.manual_seed(0)
    net = small_unet("plain", 2)
    inject_recalibration(net, name, patch_size=(32, 32))
    x = torch.randn(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert all(torch.isfinite(o.float()).all() for o in out)
    compiled = torch.compile(net, backend="eager")
    expected = net(x)
    got = compiled(x)
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(a, b)
