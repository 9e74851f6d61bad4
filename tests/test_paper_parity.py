"""The paper trainers' networks and loss against the authors' TF/Keras code.

Oracles: the trainable-parameter counts of the authors' Keras models (TF/Keras 2.14, 224x224x3 input), Keras'
initialiser definitions, a hand-computed bilinear upsampling and a hand-computed loss value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import truncnorm
from torch import nn

from nnunet_se.injection import RecalibrationSlot, inject_recalibration
from nnunet_se.trainers.auto import nnUNetTrainerMono
from nnunet_se.trainers.paper import PAPER_TRAINERS, nnUNetTrainerPaperMono
from nnunet_se.trainers.paper_loss import PaperLoss
from nnunet_se.trainers.paper_network import TRUNCATED_NORMAL_STD, build_paper_unet, he_normal_truncated_

AUTHORS_TRAINABLE = {  # model.count_params() of the authors' models, trainable weights only
    "nnUNetTrainerPaper": 1_946_881,
    "nnUNetTrainerPaperCSE": 1_968_721,
    "nnUNetTrainerPaperSCSE": 1_968_948,
    "nnUNetTrainerPaperSRM": 1_947_335,
    "nnUNetTrainerPaperFCA": 1_968_721,
    "nnUNetTrainerPaperMono": 1_969_169,
}
# not in the authors' table: cSE-NS = cSE minus the skip halves of the 3 first decoder convs, 9 (128² + 64² + 32²)
DERIVED_TRAINABLE = {"nnUNetTrainerPaperCSENoSkip": 1_968_721 - 9 * (128**2 + 64**2 + 32**2)}


class _Config:
    patch_size = [224, 224]


def _network(name: str) -> nn.Module:
    return PAPER_TRAINERS[name].build_network_architecture(None, _Config(), 3, 2, enable_deep_supervision=False)


def _trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _backbone_convs(net: nn.Module) -> list[nn.Conv2d]:
    """Convs of the U-Net itself (not inside the injected recalibration modules)."""
    inside = {id(m) for slot in net.modules() if isinstance(slot, RecalibrationSlot) for m in slot.modules()}
    return [m for m in net.modules() if isinstance(m, nn.Conv2d) and id(m) not in inside]


@pytest.mark.parametrize("name", sorted({**AUTHORS_TRAINABLE, **DERIVED_TRAINABLE}))
def test_trainable_parameters_equal_the_authors_models(name: str) -> None:
    assert _trainable(_network(name)) == {**AUTHORS_TRAINABLE, **DERIVED_TRAINABLE}[name]


@pytest.mark.parametrize("name", sorted(PAPER_TRAINERS))
def test_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    net = _network(name).train()
    x = torch.rand(2, 3, 64, 64)
    target = (torch.rand(2, 1, 64, 64) > 0.7).long()
    PaperLoss()(net(x), target).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


# Keras' truncated normal on [-2, 2] standard deviations of the underlying normal (scipy.stats.truncnorm as oracle)
TRUNCATED = truncnorm(-2.0, 2.0)


def _std_bound(n: int) -> float:
    """Five standard errors of the relative sample std of ``n`` truncated-normal draws: the sample variance has
    relative variance (kurtosis - 1) / n, so the std's relative error has sd sqrt((kurtosis - 1) / (4 n)). Without
    Keras' 1 / 0.8796 correction the std is 12 % low: outside the bound from n = 864 (the 3 -> 32 conv: 9.9 %) up."""
    kurtosis = float(TRUNCATED.stats(moments="k")) + 3.0
    return 5.0 * math.sqrt((kurtosis - 1.0) / (4.0 * n))


def test_truncation_constant_is_the_std_of_the_truncated_normal() -> None:
    assert TRUNCATED_NORMAL_STD == pytest.approx(float(TRUNCATED.std()), rel=0, abs=1e-15)


def test_he_normal_truncated_has_the_he_std() -> None:
    """589 824 draws (256 -> 256 3x3 conv): std sqrt(2 / fan_in) within 0.4 % (five standard errors, rtol derived
    above), every draw within two stds of the underlying normal, and the largest within 1 % of that edge (the
    truncated density there, 0.057 per std, makes any narrower support all but impossible at this n)."""
    torch.manual_seed(0)
    weight = he_normal_truncated_(torch.empty(256, 256, 3, 3))
    he = math.sqrt(2.0 / (256 * 9))
    assert abs(float(weight.std()) / he - 1) < _std_bound(weight.numel())
    edge = 2.0 * he / float(TRUNCATED.std())
    assert 0.99 * edge <= float(weight.abs().max()) <= edge


@pytest.mark.parametrize("name", ["nnUNetTrainerPaper", "nnUNetTrainerPaperMono", "nnUNetTrainerPaperCSENoSkip"])
def test_keras_initialisation(name: str) -> None:
    """3x3 convs: HeNormal (std sqrt(2 / fan_in), truncated at 2 s), zero bias; 1x1 head: GlorotUniform, zero bias."""
    torch.manual_seed(1)
    convs = _backbone_convs(_network(name))
    assert [c.kernel_size for c in convs] == [(3, 3)] * 14 + [(1, 1)]
    for conv in convs[:-1]:
        weight = conv.weight.detach()
        fan_in = conv.in_channels * 9
        he = math.sqrt(2.0 / fan_in)
        assert abs(float(weight.std()) / he - 1) < _std_bound(weight.numel()), conv
        assert float(weight.abs().max()) <= 2 * he / 0.87962566103423978 + 1e-7  # Keras' truncation
        assert not conv.bias.any()
    head = convs[-1].weight.detach()
    limit = math.sqrt(6.0 / (32 + 1))
    assert head.shape == (1, 32, 1, 1) and limit / 2 < float(head.abs().max()) <= limit
    assert not convs[-1].bias.any()


@pytest.mark.parametrize(
    "norm, kind, eps, momentum",
    [  # Keras BatchNormalization defaults (epsilon 1e-3, momentum 0.99 = PyTorch's 0.01); nnU-Net's InstanceNorm
        ("batch", nn.BatchNorm2d, 1e-3, 0.01),
        ("instance", nn.InstanceNorm2d, 1e-5, 0.1),
    ],
)
def test_conv_norm_variants_use_the_reference_constants(norm: str, kind: type, eps: float, momentum: float) -> None:
    """Every conv of the with_bn variants is followed by the named norm, affine, with the reference eps/momentum."""
    net = build_paper_unet(3, 2, conv_norm=norm)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    assert len(norms) == 14 and all(type(m) is kind for m in norms)  # 8 encoder + 6 decoder 3x3 convs
    assert all(m.eps == eps and m.momentum == momentum and m.affine for m in norms)


@pytest.mark.parametrize("widths", [(8, 16, 32), (8, 16, 32, 64, 128)], ids=["3-stages", "5-stages"])
def test_other_depths_mirror_the_encoder(widths: tuple[int, ...]) -> None:
    """The decoder mirrors any number of stages: level l takes the upsampled width l+1 plus the skip of width l, so
    the parameters are, by hand, 3x3 convs (9 in out + out) c_in -> w_1 -> w_1, ..., then per level
    (w_l+1 + w_l) -> w_l -> w_l, and the binary head w_1 + 1."""
    def conv(i: int, o: int) -> int:
        return 9 * i * o + o

    encoder = sum(conv(i, o) + conv(o, o) for i, o in zip((3, *widths[:-1]), widths, strict=True))
    decoder = sum(conv(deep + w, w) + conv(w, w) for deep, w in zip(widths[1:], widths[:-1], strict=True))
    net = build_paper_unet(3, 2, features_per_stage=widths)
    assert sum(p.numel() for p in net.parameters()) == encoder + decoder + widths[0] + 1
    size = 2 ** (len(widths) - 1)
    assert net(torch.rand(1, 3, 2 * size, 3 * size)).shape == (1, 2, 2 * size, 3 * size)


def test_multi_class_head_is_a_1x1_softmax_conv() -> None:
    """More than two classes: the authors' head, one 1x1 conv to ``num_classes`` channels (32 * 3 + 3 parameters in
    place of the binary head's 32 + 1), so the logits keep the input's size."""
    net = build_paper_unet(3, 3)
    head = net.decoder.head
    assert isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1) and head.out_channels == 3
    assert sum(p.numel() for p in net.parameters()) == AUTHORS_TRAINABLE["nnUNetTrainerPaper"] - 33 + 99
    assert net(torch.rand(1, 3, 32, 48)).shape == (1, 3, 32, 48)


def test_decoder_upsamples_bilinearly_without_learned_upsampling() -> None:
    net = build_paper_unet(3, 2)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    up = net.decoder.upsample
    assert isinstance(up, nn.Upsample) and up.mode == "bilinear" and not up.align_corners
    # Keras UpSampling2D(bilinear) of [[0, 1], [2, 3]] (half-pixel centres, edges clamped), worked by hand:
    # along each axis [a, b] -> [a, (3a + b) / 4, (a + 3b) / 4, b]; the input is 2 * row + col, so is the output
    rows, cols = np.array([0, 0.25, 0.75, 1]), np.array([0, 0.25, 0.75, 1])
    expected = 2 * rows[:, None] + cols[None, :]
    assert np.array_equal(up(torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])).numpy()[0, 0], expected)  # dyadic: exact
    stage = net.decoder.stages[0]
    assert stage[0][0].in_channels == 256 + 128 and stage[1][0].in_channels == 128


def test_two_channel_head_is_the_sigmoid_head() -> None:
    """Logits [0, z]: softmax gives sigmoid(z) as foreground, argmax gives z > 0."""
    torch.manual_seed(2)
    net = build_paper_unet(3, 2).eval()
    captured: list[torch.Tensor] = []
    net.decoder.head.conv.register_forward_hook(lambda module, args, out: captured.append(out))
    with torch.no_grad():
        logits = net(torch.rand(1, 3, 32, 32))
    (z,) = captured
    assert z.shape == (1, 1, 32, 32)
    # two float32 evaluations of the same value in (0, 1): a few roundings of 6e-8 apart
    torch.testing.assert_close(torch.softmax(logits, 1)[:, 1:], torch.sigmoid(z), rtol=0, atol=1e-6)
    assert torch.equal(logits.argmax(1, keepdim=True), (z > 0).long())


def test_loss_by_hand() -> None:
    """z = 0 (p = 1/2) on two 2x2 images, one all foreground, one empty:
    BCE = ln 2; Dice losses 1 - 4/6 and 1 - 1e-12/(2 + 1e-12); loss = 0.5 ln 2 + 0.5 (1/3 + 1) / 2."""
    logits = torch.zeros(2, 2, 2, 2)
    target = torch.stack([torch.ones(1, 2, 2), torch.zeros(1, 2, 2)]).long()
    expected = 0.5 * math.log(2) + 0.5 * (1 / 3 + 1.0) / 2
    assert float(PaperLoss()(logits, target)) == pytest.approx(expected, rel=1e-6)  # float32: a few roundings
    assert float(PaperLoss()(logits + 3.0, target)) == pytest.approx(expected, rel=1e-6)  # softmax shift


def test_loss_epsilon_matters_on_an_empty_mask() -> None:
    """An empty 2x2 mask predicted as confident background (z = -30, p = sigmoid(-30) = 9.4e-14 per pixel): the soft
    Dice is e / (4 p + e), so the authors' e = 1e-12 gives 0.727 (1e-11 would give 0.964); the BCE is about p.
    float32 p (one rounding) and a 4-term sum: relative 3e-7 on 4p, so absolute 1e-6 on the loss (rel=0)."""
    logits = torch.zeros(1, 2, 2, 2)
    logits[:, 1] = -30.0
    target = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    p = 1 / (1 + math.exp(30.0))
    expected = 0.5 * -math.log1p(-p) + 0.5 * (1 - 1e-12 / (4 * p + 1e-12))
    assert float(PaperLoss()(logits, target)) == pytest.approx(expected, rel=0, abs=1e-6)
    assert abs(expected - 0.5 * (1 - 1e-11 / (4 * p + 1e-11))) > 0.1


def test_loss_matches_the_authors_formula_in_numpy() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(0, 3, (3, 1, 5, 4))
    y = (rng.random((3, 1, 5, 4)) > 0.6).astype(float)
    p = 1 / (1 + np.exp(-z))
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    inter, sums = (p * y).reshape(3, -1).sum(1), (p + y).reshape(3, -1).sum(1)
    dice = (2 * inter + 1e-12) / (sums + 1e-12)
    expected = 0.5 * bce + 0.5 * np.mean(1 - dice)
    logits = torch.from_numpy(np.concatenate([np.zeros_like(z), z], 1))
    # float32 against float64 NumPy over 60 pixels: sums of 60 terms, < 60 roundings of relative 6e-8 -> 1e-5
    assert float(PaperLoss()(logits, torch.from_numpy(y).long())) == pytest.approx(expected, rel=1e-5)


def _mono_eval_net(minmax: str) -> nn.Module:
    torch.manual_seed(4)
    net = build_paper_unet(3, 2)
    inject_recalibration(net, "mono", "paper", patch_size=(32, 32), minmax=minmax)
    net.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial BatchNorm running statistics
            net(torch.rand(4, 3, 32, 32) * 2)
    return net.eval()


def test_mono_prediction_does_not_depend_on_the_batch() -> None:
    assert nnUNetTrainerPaperMono.recalibration_options == {"minmax": "sample"}
    assert nnUNetTrainerMono.recalibration_options == {"minmax": "sample"}
    torch.manual_seed(5)
    batch = torch.rand(4, 3, 32, 32) * torch.tensor([1.0, 5.0, 0.2, 3.0]).view(4, 1, 1, 1)
    outputs = {}
    for minmax in ("sample", "batch"):
        net = _mono_eval_net(minmax)
        with torch.no_grad():
            outputs[minmax] = (net(batch[:1]), net(batch)[:1])
    alone, in_batch = outputs["sample"]
    # float32 logits of magnitude < 10 through a batch-size dependent conv schedule: summation order only (< 1e-5)
    torch.testing.assert_close(alone, in_batch, rtol=0, atol=1e-5)
    alone, in_batch = outputs["batch"]  # the authors' batch-wise min-max: the other cases change the prediction
    assert not torch.allclose(alone, in_batch, rtol=0, atol=1e-3)
