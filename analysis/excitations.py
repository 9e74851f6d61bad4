"""Excitations of a trained nnU-Net fold: nnU-Net's own predictor, no test-time augmentation, gate hooks.

Cases come either from the preprocessed dataset (``val`` / ``train`` / ``all`` of the fold in
``splits_final.json``, read from ``nnUNet_preprocessed/<dataset>/<data_identifier>``) or from a folder of raw
images named like ``imagesTr`` (``<case>_0000.<ending>``), preprocessed in-process with the plans' preprocessor.
Every case runs through ``nnUNetPredictor.predict_logits_from_preprocessed_data`` (sliding window, Gaussian
weighting of the logits only, mirroring off); the logits are discarded.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nnunet_se.analysis.capture import ExcitationStream, GateRecorder
from nnunet_se.errors import UserError, one_line, shown
from nnunet_se.reading import open_regular, read_file

CASE_SETS = ("val", "train", "all")


def ensure_trainer_discovery() -> None:
    """Put the plugin's shim folder on ``nnUNet_extTrainer`` so nnU-Net finds the plugin trainers by name."""
    from nnunet_se.layout import EXT_VARIABLE, ext_trainer_value

    os.environ[EXT_VARIABLE] = ext_trainer_value(os.environ.get(EXT_VARIABLE))


CHECKPOINT_LIMIT = 8 * 2**30
"""Largest checkpoint read (bytes): nnU-Net's biggest (ResEnc L, 3d) are about 1 GB with the optimizer state."""
JSON_LIMIT = 64 * 2**20
"""Largest dataset.json / plans.json / splits_final.json read (bytes)."""


def _checkpoint_globals() -> list:
    """What an nnU-Net checkpoint holds besides tensors: NumPy scalars in its training log (``mean_fg_dice``)."""
    scalar = getattr(np, "_core", np.core).multiarray.scalar
    return [np.dtype, scalar, *(getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType"))]


@dataclass(frozen=True)
class Checkpoint:
    """What excitations use of an nnU-Net ``checkpoint_*.pth``: the trainer's class name, the configuration it was
    trained on, the state dict and the mirroring axes."""

    trainer: str
    configuration: str
    weights: dict
    mirroring_axes: tuple[int, ...] | None


def read_checkpoint(ckpt: Path, dataset: str, trainer: str, plans: str, configuration: str, fold: int) -> Checkpoint:
    """Load ``ckpt`` without running pickled code (``weights_only``: tensors, containers, NumPy scalars) and check
    that it is an nnU-Net checkpoint of the folder's ``dataset``, ``trainer``, ``plans``, ``configuration`` and
    ``fold`` (as nnU-Net records them: ``trainer_name``, ``init_args``); every problem is one line naming the file."""
    empty = False
    try:
        with open_regular(ckpt, str(ckpt), CHECKPOINT_LIMIT) as fh, torch.serialization.safe_globals(
                _checkpoint_globals()):
            empty = os.fstat(fh.fileno()).st_size == 0
            checkpoint = torch.load(fh, map_location="cpu", weights_only=True)  # streamed, not copied first
    except pickle.UnpicklingError as exc:
        text = str(exc)
        reason = text.split("Unsupported global: ")[1].split(" was not")[0] if "Unsupported global: " in text else (
            type(exc).__name__)
        raise UserError(f"{ckpt}: holds Python objects other than tensors and numbers ({one_line(reason)[:200]}); "
                        "not loaded (an nnU-Net checkpoint holds only weights and plain values)") from exc
    except (RuntimeError, EOFError, ValueError, KeyError, OSError) as exc:
        reason = "empty file" if empty else f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        raise UserError(f"{ckpt}: not a readable torch checkpoint ({reason})") from exc
    checkpoint = checkpoint if isinstance(checkpoint, dict) else {}
    init, weights = checkpoint.get("init_args"), checkpoint.get("network_weights")
    name = checkpoint.get("trainer_name")
    if (not isinstance(name, str) or not isinstance(init, dict) or not isinstance(init.get("configuration"), str)
            or not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values())):
        raise UserError(f"{ckpt}: not an nnU-Net checkpoint (expected trainer_name, init_args.configuration and "
                        "network_weights, a dict of tensors)")
    recorded = init.get("plans")
    recorded = recorded if isinstance(recorded, dict) else {}
    found = {"dataset": recorded.get("dataset_name"), "trainer": name, "plans": recorded.get("plans_name"),
             "configuration": init["configuration"], "fold": init.get("fold")}
    expected = {"dataset": dataset, "trainer": trainer, "plans": plans, "configuration": configuration, "fold": fold}
    for key, value in found.items():
        if value is not None and str(value) != str(expected[key]):
            raise UserError(f"{ckpt}: checkpoint of {key} {shown(str(value))}, but it lies in the folder of {key} "
                            f"{expected[key]}; the excitations would be labelled wrongly")
    axes = checkpoint.get("inference_allowed_mirroring_axes")
    return Checkpoint(name, init["configuration"], weights, None if axes is None else tuple(axes))


def _read_json(path: Path, kind: type = dict):
    """The JSON value of ``path`` (a regular file of at most :data:`JSON_LIMIT` bytes), checked to be a ``kind``."""
    try:
        value = json.loads(read_file(path, str(path), JSON_LIMIT))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise UserError(f"{path}: expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def load_predictor(model_dir: Path, fold: int, checkpoint: str, device: torch.device, trainer: str, plans: str,
                   configuration: str):
    """nnUNetPredictor for one fold (mirroring off), network in eval mode.

    The checkpoint is read by :func:`read_checkpoint` (never unpickled as arbitrary code) and the network built
    the way ``nnUNetPredictor.initialize_from_trained_model_folder`` builds it, then handed to nnU-Net's
    ``manual_initialization``.
    """
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    ckpt = model_dir / f"fold_{fold}" / f"checkpoint_{checkpoint}.pth"
    if not ckpt.is_file():
        raise UserError(f"{ckpt}: checkpoint not found (is fold {fold} trained? try --checkpoint final|best)")
    dataset_json, plans_json = _read_json(model_dir / "dataset.json"), _read_json(model_dir / "plans.json")
    loaded = read_checkpoint(ckpt, model_dir.parent.name, trainer, plans, configuration, fold)
    try:
        plans_manager = PlansManager(plans_json)
        configuration_manager = plans_manager.get_configuration(loaded.configuration)
        channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
        heads = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise UserError(f"{model_dir}: plans.json / dataset.json do not describe configuration "
                        f"{loaded.configuration} ({type(exc).__name__}: {exc})") from exc
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints every module it inspects
            trainer_class = recursive_find_trainer_class_by_name(loaded.trainer)
        network = trainer_class.build_network_architecture(plans_manager, configuration_manager, channels, heads,
                                                           enable_deep_supervision=False)
        network.load_state_dict(loaded.weights)
    except (RuntimeError, ValueError) as exc:  # trainer not found, network not buildable, weights do not fit
        raise UserError(f"{ckpt}: cannot build {loaded.trainer}'s network with these weights "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from exc
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=device.type == "cuda", device=device,
                                allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, configuration_manager, [loaded.weights], dataset_json,
                                    loaded.trainer, loaded.mirroring_axes)
    predictor.network.to(device).eval()
    return predictor


def preprocessed_root() -> Path:
    """``nnUNet_preprocessed`` as a path; a one-line error when it is not set."""
    from nnunetv2.paths import nnUNet_preprocessed

    if not nnUNet_preprocessed:
        raise UserError("nnUNet_preprocessed is not set (needed for --cases val|train|all; or give --cases FOLDER)")
    return Path(str(nnUNet_preprocessed))


def _split_cases(preprocessed: Path, fold: int, which: str) -> list[str]:
    splits_file = preprocessed / "splits_final.json"
    if not splits_file.is_file():
        raise UserError(f"{splits_file}: not found (needed for --cases {which}; train the fold first)")
    splits = _read_json(splits_file, list)
    if fold >= len(splits):
        raise UserError(f"{splits_file}: has {len(splits)} folds, fold {fold} requested")
    try:
        train, val = list(splits[fold]["train"]), list(splits[fold]["val"])
    except (TypeError, KeyError) as exc:
        raise UserError(f"{splits_file}: not a list of {{'train': [...], 'val': [...]}} folds ({exc})") from exc
    if which == "all":
        return sorted(set(train) | set(val))
    return sorted(train if which == "train" else val)


def iter_cases(predictor, dataset_name: str, fold: int, cases: str) -> Iterator[tuple[str, torch.Tensor]]:
    """(case id, preprocessed data (C, *spatial) float32) for the chosen case set or raw-image folder."""
    if cases in CASE_SETS:
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        root = preprocessed_root() / dataset_name
        folder = root / predictor.configuration_manager.data_identifier
        keys = _split_cases(root, fold, cases)
        dataset = infer_dataset_class(str(folder))(str(folder), keys)
        for key in keys:
            data, _, _, _ = dataset.load_case(key)
            yield key, torch.from_numpy(np.asarray(data[:], dtype=np.float32))
        return
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

    folder = Path(cases)
    if not folder.is_dir():
        raise UserError(f"{folder}: --cases must be val, train, all or a folder of images")
    ending = predictor.dataset_json["file_ending"]
    files = create_lists_from_splitted_dataset_folder(str(folder), ending, num_processes=1)
    if not files:
        raise UserError(f"{folder}: no images named <case>_0000{ending}")
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    channels = determine_num_input_channels(predictor.plans_manager, predictor.configuration_manager,
                                            predictor.dataset_json)
    for case_files in files:
        case_id = os.path.basename(case_files[0])[: -len(f"_0000{ending}")]
        image, properties = read_raw_case([Path(f) for f in case_files], predictor.plans_manager, channels)
        data, _, _ = preprocessor.run_case_npy(image, None, properties, predictor.plans_manager,
                                               predictor.configuration_manager, predictor.dataset_json)
        yield case_id, torch.from_numpy(np.asarray(data, dtype=np.float32))


def read_raw_case(files: list[Path], plans_manager, channels: int) -> tuple[np.ndarray, dict]:
    """One raw case as nnU-Net's reader returns it: ``(channels, *spatial)`` float32 and its properties.

    2-D natural images (nnU-Net's ``NaturalImage2DIO``: .png, .bmp, .tif) are decoded by the converter's rules
    (:func:`nnunet_se.conversion.images.decode_image`: grey, palette and opaque RGBA become RGB, 16-bit grey is
    scaled by its bit depth, transparent pixels are refused) into ``(3, 1, H, W)``, or ``(1, 1, H, W)`` (ITU-R 601
    luma) for a one-channel model. Other formats go through the plans' reader. Either way the channel count must be
    the model's.
    """
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    reader = plans_manager.image_reader_writer_class()
    if isinstance(reader, NaturalImage2DIO) and len(files) == 1 and channels in (1, 3):
        from nnunet_se.conversion.images import decode_image

        rgb = decode_image(read_file(files[0], str(files[0])), str(files[0]), None).image
        pixels = np.asarray(rgb if channels == 3 else rgb.convert("L"), dtype=np.float32)
        image = pixels.reshape(*pixels.shape[:2], channels).transpose(2, 0, 1)[:, None]
        return np.ascontiguousarray(image), {"spacing": (999, 1, 1)}  # NaturalImage2DIO's spacing
    try:
        image, properties = reader.read_images([str(f) for f in files])
    except (OSError, RuntimeError, ValueError, AssertionError) as exc:
        raise UserError(f"{files[0]}: cannot read this image ({type(exc).__name__}: {exc})") from exc
    if image.shape[0] != channels:
        raise UserError(f"{files[0]}: {image.shape[0]} channel(s), but the model takes {channels}")
    return image, properties


def _count_cases(predictor, dataset_name: str, fold: int, cases: str) -> int | None:
    if cases in CASE_SETS:
        return len(_split_cases(preprocessed_root() / dataset_name, fold, cases))
    return None


def capture_fold(predictor, module_paths: list[str], dataset_name: str, fold: int,
                 cases: str) -> tuple[ExcitationStream, list[str]]:
    """Run every chosen case once (no TTA); the per-case mean gate vectors and the hooked child per depth."""
    stream = ExcitationStream()
    total = _count_cases(predictor, dataset_name, fold, cases)
    with GateRecorder(predictor.network, module_paths) as recorder:
        for case_id, data in tqdm(iter_cases(predictor, dataset_name, fold, cases), total=total,
                                  desc=f"fold {fold}", unit="case", disable=None):
            recorder.start_case()
            predictor.predict_logits_from_preprocessed_data(data)
            vectors, tiles = recorder.finish_case()
            stream.add(case_id, vectors, tiles)
    if not stream.case_ids:
        raise UserError(f"fold {fold}: no cases to run for --cases {cases}")
    return stream, recorder.gate_names


def versions() -> dict[str, str]:
    out = {}
    for dist in ("nnunet-se", "nnunetv2", "torch", "dynamic-network-architectures", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
