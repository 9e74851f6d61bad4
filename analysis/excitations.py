"""Excitations of a trained nnU-Net fold: nnU-Net's own predictor, no test-time augmentation, gate hooks.

Cases come either from the preprocessed dataset (``val`` / ``train`` / ``all`` of the fold in
``splits_final.json``, read from ``nnUNet_preprocessed/<dataset>/<data_identifier>``) or from a folder of raw
images named like ``imagesTr`` (``<case>_0000.<ending>``), preprocessed in-process with the plans' preprocessor.
Every case runs through ``nnUNetPredictor.predict_logits_from_preprocessed_data`` (sliding window, Gaussian
weighting of the logits only, mirroring off); the logits are discarded.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nnunet_se.analysis.capture import ExcitationStream, GateRecorder
from nnunet_se.errors import UserError

CASE_SETS = ("val", "train", "all")


def ensure_trainer_discovery() -> None:
    """Put the plugin's shim folder on ``nnUNet_extTrainer`` so nnU-Net finds the plugin trainers by name."""
    from nnunet_se.layout import EXT_VARIABLE, ext_trainer_value

    os.environ[EXT_VARIABLE] = ext_trainer_value(os.environ.get(EXT_VARIABLE))


def load_predictor(model_dir: Path, fold: int, checkpoint: str, device: torch.device):
    """nnUNetPredictor for one fold (mirroring off), network in eval mode."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    ckpt = model_dir / f"fold_{fold}" / f"checkpoint_{checkpoint}.pth"
    if not ckpt.is_file():
        raise UserError(f"{ckpt}: checkpoint not found (is fold {fold} trained? try --checkpoint final|best)")
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=device.type == "cuda", device=device,
                                allow_tqdm=False)
    try:
        predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=(fold,),
                                                       checkpoint_name=ckpt.name)
    except OSError as exc:  # dataset.json / plans.json missing or unreadable
        raise UserError(f"{model_dir}: cannot load fold {fold} ({exc.strerror or exc}: {exc.filename})") from exc
    except (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as exc:  # torch.load / plans
        raise UserError(f"{ckpt}: cannot load this fold ({type(exc).__name__}: {exc})") from exc
    predictor.network.to(device).eval()
    return predictor


def preprocessed_root() -> Path:
    """``nnUNet_preprocessed`` as a path; a one-line error when it is not set."""
    from nnunetv2.paths import nnUNet_preprocessed

    if not nnUNet_preprocessed:
        raise UserError("nnUNet_preprocessed is not set (needed for --cases val|train|all; or give --cases FOLDER)")
    return Path(str(nnUNet_preprocessed))


def _split_cases(preprocessed: Path, fold: int, which: str) -> list[str]:
    import json

    splits_file = preprocessed / "splits_final.json"
    if not splits_file.is_file():
        raise UserError(f"{splits_file}: not found (needed for --cases {which}; train the fold first)")
    try:
        splits = json.loads(splits_file.read_text())
        if fold >= len(splits):
            raise UserError(f"{splits_file}: has {len(splits)} folds, fold {fold} requested")
        train, val = list(splits[fold]["train"]), list(splits[fold]["val"])
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError) as exc:
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
    from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

    folder = Path(cases)
    if not folder.is_dir():
        raise UserError(f"{folder}: --cases must be val, train, all or a folder of images")
    ending = predictor.dataset_json["file_ending"]
    files = create_lists_from_splitted_dataset_folder(str(folder), ending, num_processes=1)
    if not files:
        raise UserError(f"{folder}: no images named <case>_0000{ending}")
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    for case_files in files:
        case_id = os.path.basename(case_files[0])[: -len(f"_0000{ending}")]
        data, _, _ = preprocessor.run_case(case_files, None, predictor.plans_manager,
                                           predictor.configuration_manager, predictor.dataset_json)
        yield case_id, torch.from_numpy(np.asarray(data, dtype=np.float32))


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
