#!/usr/bin/env bash
# Issue 10's GPU acceptance run as ONE device call; the whole script stays under ACC_TOTAL_S (410 s) of wall time.
#   here:    bash ../shared/tools/gpu/prepare.sh
#   device:  carry [".gpu"], command:
#            export PYTHONSAFEPATH=1 && source .gpu/device_setup.sh && bash benchmarks/gpu_acceptance.sh
#            (without PYTHONSAFEPATH, device_setup's `python3 -c` import check from the project root finds the
#            ./nnunet_se source folder, which lacks the mapped packages, instead of the installed nnunet_se)
#   CPU dry run (catches script bugs; no compile: nnU-Net never compiles on the CPU, tiny sizes):
#            ACC_DEVICE=cpu OUT=/tmp/acc_out bash benchmarks/gpu_acceptance.sh
# Stages in priority order; each runs under `timeout` with min(its budget, time left before the deadline) and is
# skipped when less than ACC_MIN_S (20 s) is left. Every stage writes its log under $OUT as it runs and appends its
# headline to $OUT/summary.txt; a failed stage never stops the later ones. $OUT/acceptance.json collects the numbers.
#   0. synthetic dataset (nnunet_se.synthetic, ACC_N_TRAIN cases of ACC_SIZE px: nnU-Net caps the 2d batch at 5 % of
#      the dataset, so 240 cases give batch 12), fold 0 cut to ACC_VAL_CASES validation cases, plan + preprocess 2d;
#   1. nnUNetv2_train 990 2d 0 with nnU-Net's defaults (torch.compile, fp16 autocast + GradScaler),
#      RecalibrationTrainer (nnU-Net's network, no module) then nnUNetTrainerMono, ACC_EPOCHS epochs x ACC_ITERATIONS
#      iterations (train and val), TORCH_LOGS=recompiles,graph_breaks: epoch times (epoch 0 compiles), recompiles,
#      graph breaks, final-validation time per case (compiled predictor, from the log's timestamps);
#   2. benchmarks/gpu_step.py: every trainer eager, then compiled: paper baseline + PaperMono, auto baseline + Mono
#      (three runs, each with its own gpu_step.{json,md} under $OUT/gpu_step_<part>/);
#   3. nnUNetv2_predict (eager, nnU-Net's predict default) on the test images with both trainers' final checkpoints;
#   4. tests/test_compile.py on CUDA (aot_eager), if pytest is installed there.
# Afterwards: benchmarks/results/ takes $OUT/gpu_step_*/gpu_step.{json,md}; docs/modules.md the summary.
set -uo pipefail
: "${OUT:?set OUT (the device machine sets it)}"
mkdir -p "$OUT"
START=$(date +%s)
DEADLINE=$(( START + ${ACC_TOTAL_S:-410} ))
MIN_S=${ACC_MIN_S:-20}
DEVICE=${ACC_DEVICE:-cuda}
if [ "$DEVICE" = cpu ]; then  # dry-run sizes
  N_TRAIN=${ACC_N_TRAIN:-20} N_TEST=${ACC_N_TEST:-2} SIZE=${ACC_SIZE:-64} EPOCHS=${ACC_EPOCHS:-2}
  ITERATIONS=${ACC_ITERATIONS:-2} VAL_CASES=${ACC_VAL_CASES:-2} NP=${ACC_NP:-1}
  STEP_SIZE=(--size 32 --paper-batch 2 --auto-batch 2 --rounds 1 --steps 1 --warmup 0 --backend aot_eager)
  export nnUNet_def_n_proc=${nnUNet_def_n_proc:-1}
  TRAIN_ENV=(nnUNet_n_proc_DA=0)  # planning calls torch.set_num_threads(nnUNet_n_proc_DA): train/predict only
else
  N_TRAIN=${ACC_N_TRAIN:-240} N_TEST=${ACC_N_TEST:-4} SIZE=${ACC_SIZE:-224} EPOCHS=${ACC_EPOCHS:-2}
  ITERATIONS=${ACC_ITERATIONS:-25} VAL_CASES=${ACC_VAL_CASES:-5} NP=${ACC_NP:-8}
  STEP_SIZE=(--rounds 3 --steps 5 --warmup 1)
  TRAIN_ENV=()
fi
DEV_ARGS=(-device "$DEVICE")
# PYTHONSAFEPATH: `python3 -c`/`python3 -` from the project root would import ./nnunet_se (the source folder, without
# the conversion/trainers/analysis packages that setup maps in) instead of the installed package
export PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1
export nnUNet_raw=/tmp/acc/raw nnUNet_preprocessed=/tmp/acc/preprocessed nnUNet_results=/tmp/acc/results
# the plugin's trainer shim (what `nnunet-se env` sets; that console script can be missing on the device: pip
# --target skips the project's bin/ when the wheels' bin/ is already there)
ext=$(python3 -c "import os; from nnunet_se.workflow.env import ext_trainer_value; \
print(ext_trainer_value(os.environ.get('nnUNet_extTrainer')))") && export nnUNet_extTrainer=$ext
rm -rf /tmp/acc && mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
summary="$OUT/summary.txt"
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }
# budget NAME SECONDS: prints the stage's time limit (its budget or the time left), or fails when under MIN_S is left
budget() {
  local left=$(( DEADLINE - $(date +%s) - 15 ))  # 15 s: timeout -k 10 plus the summary
  local limit=$(( $2 < left ? $2 : left ))
  if [ "$left" -lt "$MIN_S" ]; then say "$1: skipped, ${left}s left before the deadline" >&2; return 1; fi
  echo "$limit"
}
elapsed() { echo $(( $(date +%s) - $1 )); }
rc() { if [ "$1" -ge 124 ]; then echo "rc=$1 (time limit)"; else echo "rc=$1"; fi; }  # 124/137: timeout

python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')" 2>&1 | tee -a "$summary"
say "device=$DEVICE n_train=$N_TRAIN size=$SIZE epochs=$EPOCHS iterations=$ITERATIONS val_cases=$VAL_CASES" \
  "nnUNet_compile=${nnUNet_compile-unset} nnUNet_extTrainer=${nnUNet_extTrainer:-}"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

# ---- 0. dataset -----------------------------------------------------------------------------------------------------
if limit=$(budget dataset "${ACC_PREP_S:-80}"); then
  t0=$(date +%s)
  ACC_N_TRAIN=$N_TRAIN ACC_N_TEST=$N_TEST ACC_SIZE=$SIZE ACC_VAL_CASES=$VAL_CASES timeout -k 10 "$limit" python3 - \
    > "$OUT/dataset.log" 2>&1 <<'EOF'
import json
import os
from pathlib import Path

from nnunet_se.synthetic import SyntheticSpec, write_synthetic_dataset

spec = SyntheticSpec(n_train=int(os.environ["ACC_N_TRAIN"]), n_test=int(os.environ["ACC_N_TEST"]),
                     size=int(os.environ["ACC_SIZE"]))
folder = write_synthetic_dataset(Path(os.environ["nnUNet_raw"]), 990, "GpuAcceptance", spec)
# fold 0 keeps ACC_VAL_CASES validation cases (the final validation predicts each); the others go to training
splits = json.loads((folder / "splits_final.json").read_text())
keep = int(os.environ["ACC_VAL_CASES"])
splits[0] = {"train": sorted(splits[0]["train"] + splits[0]["val"][keep:]), "val": splits[0]["val"][:keep]}
(folder / "splits_final.json").write_text(json.dumps(splits, indent=1))  # planning copies it to preprocessed
print(folder, "fold 0:", len(splits[0]["train"]), "train /", len(splits[0]["val"]), "val")
EOF
  say "dataset $(rc $?) $(elapsed "$t0")s: $(tail -1 "$OUT/dataset.log")"
fi
if limit=$(budget preprocess "${ACC_PREP_S:-80}"); then
  t0=$(date +%s)
  timeout -k 10 "$limit" nnUNetv2_plan_and_preprocess -d 990 -c 2d -np "$NP" -npfp "$NP" > "$OUT/preprocess.log" 2>&1
  say "preprocess $(rc $?) $(elapsed "$t0")s"
  plans=$nnUNet_preprocessed/Dataset990_GpuAcceptance/nnUNetPlans.json
  cp "$plans" "$OUT/" 2>/dev/null
  python3 -c "import json, sys; c = json.load(open(sys.argv[1]))['configurations']['2d']; \
print('plan 2d: batch', c['batch_size'], 'patch', c['patch_size'], 'features', \
c['architecture']['arch_kwargs']['features_per_stage'])" "$plans" 2>&1 | tee -a "$summary"
fi

# ---- 1. nnUNetv2_train with nnU-Net's defaults ----------------------------------------------------------------------
TRAINERS=(RecalibrationTrainer nnUNetTrainerMono)
for trainer in "${TRAINERS[@]}"; do
  limit=$(budget "train $trainer" "${ACC_TRAIN_S:-150}") || continue
  t0=$(date +%s)
  env "${TRAIN_ENV[@]}" NNUNET_SE_NUM_EPOCHS="$EPOCHS" NNUNET_SE_NUM_ITERATIONS="$ITERATIONS" NNUNET_SE_SEED=0 \
    TORCH_LOGS=recompiles,graph_breaks timeout -k 10 "$limit" \
    nnUNetv2_train 990 2d 0 -tr "$trainer" "${DEV_ARGS[@]}" > "$OUT/train_$trainer.log" 2>&1
  say "train $trainer $(rc $?) wall=$(elapsed "$t0")s (limit ${limit}s)"
done
cp -r "$nnUNet_results" "$OUT/nnunet_results" 2>/dev/null

# ---- 2. gpu_step: eager, then compiled ------------------------------------------------------------------------------
step() {  # step PART BUDGET ARGS...: one gpu_step.py run into $OUT/gpu_step_PART/
  local part=$1 limit t0
  limit=$(budget "gpu_step $part" "$2") || return 0
  shift 2
  t0=$(date +%s)
  timeout -k 10 "$limit" python3 benchmarks/gpu_step.py --device "$DEVICE" "${STEP_SIZE[@]}" --out "$OUT/gpu_step_$part" \
    "$@" > "$OUT/gpu_step_$part.log" 2>&1
  say "gpu_step $part $(rc $?) wall=$(elapsed "$t0")s (limit ${limit}s)"
}
step eager "${ACC_STEP_EAGER_S:-90}" --modes eager
step compiled_paper "${ACC_STEP_COMPILED_S:-100}" --modes compiled --families paper --trainers nnUNetTrainerPaperMono \
  --compile nnUNetTrainerPaper,nnUNetTrainerPaperMono
step compiled_auto "${ACC_STEP_COMPILED_S:-100}" --modes compiled --families auto --trainers nnUNetTrainerMono \
  --compile nnUNetTrainer,nnUNetTrainerMono

# ---- 3. nnUNetv2_predict (eager) ------------------------------------------------------------------------------------
for trainer in "${TRAINERS[@]}"; do
  [ -f "$nnUNet_results/Dataset990_GpuAcceptance/${trainer}__nnUNetPlans__2d/fold_0/checkpoint_final.pth" ] || {
    say "predict $trainer: skipped, no checkpoint_final.pth"; continue; }
  limit=$(budget "predict $trainer" "${ACC_PREDICT_S:-45}") || continue
  t0=$(date +%s)
  env "${TRAIN_ENV[@]}" timeout -k 10 "$limit" nnUNetv2_predict -i "$nnUNet_raw/Dataset990_GpuAcceptance/imagesTs" \
    -o "/tmp/acc/predict_$trainer" -d 990 -c 2d -f 0 -tr "$trainer" -chk checkpoint_final.pth \
    "${DEV_ARGS[@]}" > "$OUT/predict_$trainer.log" 2>&1
  say "predict $trainer $(rc $?) wall=$(elapsed "$t0")s for $N_TEST cases (process start included)"
done

# ---- 4. compile tests on CUDA ---------------------------------------------------------------------------------------
if ! python3 -c "import pytest" 2>/dev/null; then
  say "test_compile: skipped, pytest is not installed"
elif [ "$DEVICE" = cpu ]; then
  say "test_compile: skipped on the CPU dry run (the suite runs it)"
elif limit=$(budget test_compile "${ACC_TESTS_S:-60}"); then
  NNUNET_SE_COMPILE_DEVICE=cuda NNUNET_SE_COMPILE_BACKEND=aot_eager timeout -k 10 "$limit" \
    python3 -m pytest -q -p no:randomly -p no:cacheprovider tests/test_compile.py -k "module_compiles or sequence" \
    > "$OUT/test_compile_cuda.log" 2>&1
  say "test_compile (cuda) $(rc $?) $(tail -1 "$OUT/test_compile_cuda.log")"
fi

# ---- summary --------------------------------------------------------------------------------------------------------
python3 - "$OUT" "${TRAINERS[@]}" <<'EOF' 2>&1 | tee -a "$summary"
"""Parse the stage logs into acceptance.json and print the headline numbers."""
import json
import re
import statistics
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

out, trainers = Path(sys.argv[1]), sys.argv[2:]
STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?): "


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def train_record(log: Path) -> dict:
    text = log.read_text(errors="replace") if log.exists() else ""
    predicting = [stamp(m) for m in re.findall(STAMP + r"predicting \S+", text)]
    gaps = [b - a for a, b in zip(predicting, predicting[1:])]
    dice = re.findall(r"Mean Validation Dice:\s+(\S+)", text)
    return {
        "epoch_s": [float(x) for x in re.findall(r"Epoch time: ([\d.]+) s", text)],
        "recompiles": text.count("Recompiling function"),
        "recompiled": dict(Counter(re.findall(r"Recompiling function (\S+ in \S+)", text))),
        # one per break message, in the wordings of torch 2.4-2.14 ("Reason:" / "Graph Break Reason:" follow)
        "graph_breaks": len(re.findall(r"Graph break (?:in user code|\(user stack suppressed)", text)),
        "graph_break_sites": sorted(set(re.findall(r"in user code at (\S+)", text))),
        "compile_used": "Using torch.compile" in text,
        "val_first_case_s": round(gaps[0], 3) if gaps else None,
        "val_case_s": round(statistics.median(gaps[1:]), 3) if len(gaps) > 1 else None,
        "val_cases": len(predicting),
        "mean_val_dice": float(dice[-1]) if dice else None,
        "traceback": "Traceback" in text,
    }


def ratio(a, b):
    return round(a / b, 3) if a and b else None


train = {t: train_record(out / f"train_{t}.log") for t in trainers}
result = {"train": train}
base, mono = (train[t] for t in trainers)
for i, name in enumerate(("first_epoch", "second_epoch")):
    if len(base["epoch_s"]) > i and len(mono["epoch_s"]) > i:
        result[f"mono_over_plain_{name}"] = ratio(mono["epoch_s"][i], base["epoch_s"][i])
result["mono_over_plain_val_case"] = ratio(mono["val_case_s"], base["val_case_s"])
steps = {}
for part in sorted(out.glob("gpu_step_*/gpu_step.json")):
    rows = json.loads(part.read_text())["rows"]
    steps[part.parent.name] = [{k: r[k] for k in ("family", "trainer", "mode", "median_step_ms",
                                                   "ratio_to_baseline", "compile_s", "graphs")} for r in rows]
result["gpu_step"] = steps
(out / "acceptance.json").write_text(json.dumps(result, indent=1) + "\n")
print("---- headline")
for t, r in train.items():
    print(f"{t}: compile={r['compile_used']} epochs(s)={r['epoch_s']} recompiles={r['recompiles']} "
          f"graph_breaks={r['graph_breaks']} val first/steady case (s)={r['val_first_case_s']}/{r['val_case_s']} "
          f"({r['val_cases']} cases) dice={r['mean_val_dice']} traceback={r['traceback']}")
print({k: v for k, v in result.items() if k.startswith("mono_over_plain")})
for part, rows in steps.items():
    for r in rows:
        ratio_s = "" if r["ratio_to_baseline"] is None else f"{r['ratio_to_baseline']:.3f}"
        extra = "" if r["compile_s"] is None else f" compile={r['compile_s']:.1f}s graphs={r['graphs']}"
        print(f"{part}: {r['family']} {r['trainer']} {r['mode']} {r['median_step_ms']:.2f} ms ratio={ratio_s}{extra}")
EOF
say "total wall $(elapsed "$START")s"
