"""Gate capture on the paper U-Net with injected modules (d-n-a + injection, no training needed).

The recorded vector is checked against the gate's multiplicative effect: a channel gate maps the stage output x to
x * g, so g = output / input of the inserted module, measured here with hooks on the module itself.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

from nnunet_se.analysis.capture import ExcitationStream, GateRecorder
from nnunet_se.errors import UserError
from nnunet_se.injection import inject_recalibration
from nnunet_se.trainers.paper import build_paper_unet

FEATURES = (8, 16, 32, 64)


def paper_net(module: str) -> tuple[torch.nn.Module, list[str]]:
    """Paper U-Net with ``module`` injected; each module's input is shifted by +1 (pre-hook) so that no channel is
    all zero after ReLU and output / input is defined everywhere."""
    torch.manual_seed(0)
    net = build_paper_unet(3, 2, features_per_stage=FEATURES)
    paths = inject_recalibration(net, module, patch_size=(32, 32))
    for path in paths:
        net.get_submodule(path).register_forward_pre_hook(lambda m, inputs: (inputs[0] + 1.0,))
    return net.eval(), paths


def gate_from_module_io(net: torch.nn.Module, paths: list[str], x: torch.Tensor) -> dict[int, np.ndarray]:
    """g per depth = mean over positions of (module output / module input), shape (N, C)."""
    seen: dict[int, np.ndarray] = {}
    handles = []
    for depth, path in enumerate(paths, start=1):
        def hook(module, inputs, output, depth=depth):
            ratio = (output / inputs[0]).flatten(2)
            seen[depth] = ratio.mean(2).numpy()
        handles.append(net.get_submodule(path).register_forward_hook(hook))
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("module", ["cse", "srm", "mono"])
def test_recorded_vector_is_the_gate(module: str) -> None:
    net, paths = paper_net(module)
    x = torch.rand(1, 3, 32, 32) + 0.1
    expected = gate_from_module_io(net, paths, x)
    with GateRecorder(net, paths) as recorder, torch.no_grad():
        net(x)
        vectors, tiles = recorder.finish_case()
    assert tiles == 1
    assert [v.shape[0] for v in vectors.values()] == list(FEATURES[:-1])
    for depth, v in vectors.items():
        np.testing.assert_allclose(v, expected[depth][0], rtol=1e-4, atol=1e-6)


def test_tiles_are_averaged_and_hooks_removed() -> None:
    net, paths = paper_net("cse")
    tiles = [torch.rand(1, 3, 32, 32) + 0.1 for _ in range(3)]
    expected = [gate_from_module_io(net, paths, t) for t in tiles]
    with GateRecorder(net, paths) as recorder, torch.no_grad():
        for t in tiles:
            net(t)
        vectors, n = recorder.finish_case()
        net(torch.cat(tiles))  # a batch of 3 tiles counts as 3 tiles
        batched, n_batched = recorder.finish_case()
    assert n == n_batched == 3
    for depth in vectors:
        mean = np.mean([e[depth][0] for e in expected], axis=0)
        np.testing.assert_allclose(vectors[depth], mean, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(batched[depth], mean, rtol=1e-4, atol=1e-6)
    assert all(not gate._forward_hooks for gate in recorder.gates)


def test_sse_records_its_spatial_gate_mean() -> None:
    """sSE has no channel gate: its spatial gate s (N, 1, H, W) is recorded as one channel, its spatial mean. The
    module maps x to x * s, so output / input = s at every channel and position and its mean is that oracle."""
    net, paths = paper_net("sse")
    x = torch.rand(1, 3, 32, 32) + 0.1
    expected = gate_from_module_io(net, paths, x)
    with GateRecorder(net, paths) as recorder, torch.no_grad():
        net(x)
        vectors, _ = recorder.finish_case()
    assert recorder.gate_names == ["spatial_gate"] * len(paths)
    for depth, v in vectors.items():
        assert v.shape == (1,)
        np.testing.assert_allclose(expected[depth][0], v[0], rtol=1e-4, atol=1e-6)  # the same value in every channel


def test_scse_records_its_channel_gate_and_gateless_module_refuses() -> None:
    net, paths = paper_net("scse")
    with GateRecorder(net, paths) as recorder, torch.no_grad():
        net(torch.rand(1, 3, 32, 32))
        vectors, _ = recorder.finish_case()
    assert recorder.gate_names == ["gate"] * len(paths)
    assert [v.shape[0] for v in vectors.values()] == list(FEATURES[:-1])
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1))
    with pytest.raises(UserError, match="neither a channel `gate` nor a `spatial_gate`"):
        GateRecorder(plain, ["0"])


def test_case_without_forward_is_an_error() -> None:
    net, paths = paper_net("cse")
    with GateRecorder(net, paths) as recorder, pytest.raises(RuntimeError, match="no gate output"):
        recorder.finish_case()
    with pytest.raises(ValueError, match="no recalibration modules"):
        GateRecorder(net, [])


def test_stream_holds_one_vector_per_case_and_depth() -> None:
    stream = ExcitationStream()
    for i in range(5):
        stream.add(f"c{i}", {1: np.full(4, i, np.float32), 2: np.full(8, -i, np.float32)}, tiles=1 + i % 2)
    arrays = stream.arrays()
    assert {d: a.shape for d, a in arrays.items()} == {1: (5, 4), 2: (5, 8)}
    np.testing.assert_array_equal(arrays[1][:, 0], np.arange(5))
    assert stream.case_ids == [f"c{i}" for i in range(5)] and stream.tiles == [1, 2, 1, 2, 1]
    assert sum(v.nbytes for rows in stream.rows.values() for v in rows) == 5 * (4 + 8) * 4


@pytest.mark.parametrize("results_set", [True, False])
def test_excitations_cli_without_model_is_one_line(tmp_path, capsys, monkeypatch, results_set: bool) -> None:
    import nnunetv2.paths
    import nnunetv2.utilities.file_path_utilities as paths_util

    from nnunet_se.analysis import cli

    results = str(tmp_path / "results") if results_set else None
    monkeypatch.setattr(nnunetv2.paths, "nnUNet_results", results)
    monkeypatch.setattr(paths_util, "nnUNet_results", results)
    if results is None:  # the plugin reads nnU-Net's folders from the environment
        monkeypatch.delenv("nnUNet_results", raising=False)
    else:
        monkeypatch.setenv("nnUNet_results", results)
    out = tmp_path / "exc"
    argv = ["excitations", "-d", "Dataset999_Nope", "-tr", "nnUNetTrainerCSE", "-f", "0", "--device", "cpu",
            "-o", str(out)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    if results_set:
        assert f"{results}/Dataset999_Nope/nnUNetTrainerCSE__nnUNetPlans__2d: no trained model folder" in err[0]
    else:
        assert "nnUNet_results is not set" in err[0]
    assert not out.exists()


# ---- raw images for --cases FOLDER: the converter's decoding rules --------------------------------------------------

RGB = np.random.default_rng(7).integers(0, 256, (6, 5, 3), dtype=np.uint8)
GREY = RGB[..., 0]


def _natural_plans():
    """The one attribute of nnU-Net's PlansManager that read_raw_case uses, for a 2-D PNG dataset."""
    from types import SimpleNamespace

    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    return SimpleNamespace(image_reader_writer_class=NaturalImage2DIO)


def _png(path, array: np.ndarray, mode: str | None = None) -> None:
    from PIL import Image

    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)


def _palette_png(path, rgb: np.ndarray) -> None:
    """A palette PNG holding exactly the colours of ``rgb`` (one palette entry per pixel: 30 <= 256)."""
    from PIL import Image

    image = Image.fromarray(np.arange(rgb.shape[0] * rgb.shape[1], dtype=np.uint8).reshape(rgb.shape[:2]), "P")
    image.putpalette(rgb.reshape(-1).tolist())
    image.save(path)


# (name, writes the file, model channels, expected (C, H, W) or an error fragment). Oracles: grey is replicated to
# RGB; opaque alpha and a palette of the same colours give the RGB pixels; 16-bit grey v becomes round(v * 255 /
# 65535); a one-channel model gets ITU-R 601 luma, which for a grey image is the grey itself.
RAW_CASES = [
    ("rgb", lambda p: _png(p, RGB), 3, RGB.transpose(2, 0, 1)),
    ("grey", lambda p: _png(p, GREY), 3, np.stack([GREY] * 3)),
    ("rgba-opaque", lambda p: _png(p, np.dstack([RGB, np.full(GREY.shape, 255, np.uint8)])), 3, RGB.transpose(2, 0, 1)),
    ("grey-alpha-opaque", lambda p: _png(p, np.dstack([GREY, np.full(GREY.shape, 255, np.uint8)]), "LA"), 3,
     np.stack([GREY] * 3)),
    ("palette", lambda p: _palette_png(p, RGB), 3, RGB.transpose(2, 0, 1)),
    ("grey-16bit", lambda p: _png(p, (GREY.astype(np.uint16) * 257)), 3, np.stack([GREY] * 3)),
    ("grey-for-one-channel-model", lambda p: _png(p, GREY), 1, GREY[None]),
    ("rgba-transparent", lambda p: _png(p, np.dstack([RGB, np.where(GREY > 128, 255, 0).astype(np.uint8)])), 3,
     "transparent pixels"),
    ("not-an-image", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n not really"), 3, "corrupt or truncated"),
    ("named-pipe", lambda p: os.mkfifo(p), 3, "not a regular file"),
    ("four-channel-model", lambda p: _png(p, RGB), 4, "3 channel(s), but the model takes 4"),
]


@pytest.mark.parametrize(("name", "write", "channels", "expected"), RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_raw_case_is_decoded_as_the_converter_does(tmp_path, name, write, channels, expected) -> None:
    from nnunet_se.analysis.excitations import read_raw_case

    path = tmp_path / "case_0000.png"
    write(path)
    if isinstance(expected, str):
        with pytest.raises(UserError, match=re.escape(expected)) as info:
            read_raw_case([path], _natural_plans(), channels)
        assert str(path) in str(info.value)
        return
    image, properties = read_raw_case([path], _natural_plans(), channels)
    assert image.dtype == np.float32 and image.shape == (channels, 1, *GREY.shape)
    np.testing.assert_array_equal(image[:, 0], expected.astype(np.float32))  # exact: 8-bit values, no resampling
    assert properties == {"spacing": (999, 1, 1)}  # what nnU-Net's NaturalImage2DIO reports


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_cases_folder_of_grey_and_rgba_pngs_runs_on_a_trained_model(nnunet_e2e, tmp_path) -> None:
    """``excitations --cases FOLDER`` on a trained fold with PNGs in the modes the converter accepts: an opaque
    RGBA image gives exactly the excitations of its RGB pixels, a grey image those of the grey replicated to RGB
    (the converter's rules), each case one row."""
    from PIL import Image

    run = nnunet_e2e
    trainer = run.trainers[-1]
    rgb = np.asarray(Image.open(sorted((run.raw / run.dataset_name / "imagesTs").glob("*.png"))[0]).convert("RGB"))
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    cases = tmp_path / "cases"
    cases.mkdir()
    for name, image in (("rgb", Image.fromarray(rgb)), ("rgba", Image.fromarray(rgb).convert("RGBA")),
                        ("grey", Image.fromarray(grey)), ("greyrgb", Image.fromarray(np.stack([grey] * 3, -1)))):
        image.save(cases / f"{name}_0000.png")
    out = tmp_path / "exc"
    run.run("nnunet-se-analyze", "excitations", "-d", str(run.dataset_id), "-tr", trainer, "-f", "0", "--checkpoint",
            "final", "--cases", str(cases), "--device", "cpu", "-o", str(out))
    with np.load(out / f"{run.dataset_name}__{trainer}__{run.plans}__{run.configuration}__fold_0.npz") as data:
        rows = {str(c): i for i, c in enumerate(data["case_ids"])}
        depths = [data[k] for k in data.files if k.startswith("depth_")]
    assert sorted(rows) == ["grey", "greyrgb", "rgb", "rgba"] and depths
    for g in depths:  # same input tensor, same deterministic CPU forward: identical float32 rows
        np.testing.assert_array_equal(g[rows["rgba"]], g[rows["rgb"]])
        np.testing.assert_array_equal(g[rows["grey"]], g[rows["greyrgb"]])
        assert not np.array_equal(g[rows["grey"]], g[rows["rgb"]])  # the images differ, so do the excitations
