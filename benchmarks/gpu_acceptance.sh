#!/usr/bin/env bash
# GPU acceptance run of every trainer as ONE device call; the script stays under ACC_TOTAL_S (540 s) of wall time, so
# with the wheels' setup (about 30 s) it fits one 10-minute call.
#   device:  carry [".gpu"] (the wheels that device_setup.sh installs), command:
#            export PYTHONSAFEPATH=1 && source .gpu/device_setup.sh && bash benchmarks/gpu_acceptance.sh
#            (without PYTHONSAFEPATH, device_setup's `python3 -c` import check from the project root finds the
#            ./nnunet_se source folder, which lacks the mapped packages, instead of the installed nnunet_se)
#   CPU dry run (catches script bugs; no compile: nnU-Net never compiles on the CPU, tiny sizes):
#            ACC_DEVICE=cpu OUT=/tmp/acc_out bash benchmarks/gpu_acceptance.sh
# Stages in priority order (ACC_STAGES, default "train predict steps mono tests"); each runs under `timeout` with
# min(its budget, time left before the deadline) and is skipped when less than ACC_MIN_S (20 s) is left. Every stage
# writes its log under $OUT as it runs, appends its headline to $OUT/summary.txt and refreshes $OUT/acceptance.{json,md}
# (benchmarks/gpu_acceptance_summary.py), so a run cut by the call's limit still reports every finished stage; a failed
# stage never stops the later ones. With the H100's compile times one call covers dataset, train and predict (about
# 8 min); the next session's call runs ACC_STAGES="steps mono", a third one what that left (e.g. ACC_STAGES=mono).
#   0. (train, predict) synthetic dataset (nnunet_se.synthetic, ACC_N_TRAIN cases of ACC_SIZE px: nnU-Net caps the
#      2d batch at 5 % of the dataset, so 240 cases give batch 12), fold 0 cut to ACC_VAL_CASES validation cases,
#      plan + preprocess 2d;
#   1. train: nnUNetv2_train 990 2d 0 with nnU-Net's defaults (torch.compile, fp16 autocast + GradScaler) for
#      RecalibrationTrainer (nnU-Net's network, no module) then nnUNetTrainerMono, ACC_EPOCHS epochs x
#      ACC_ITERATIONS iterations, TORCH_LOGS=recompiles,graph_breaks, through benchmarks/nnunet_measured.py (nnU-Net's
#      own entry point plus a peak-memory line per epoch): epoch times (epoch 0 compiles), peak CUDA memory of the
#      training iterations, recompiles, graph breaks, final-validation time per case. NNUNET_SE_MONO_FUSED=1 in the
#      command's environment trains Mono with its fused path;
#   2. predict: nnUNetv2_predict (nnU-Net's defaults) on the test images with both final checkpoints, through
#      benchmarks/nnunet_measured.py (seconds per case of the sliding-window prediction);
#   3. steps: benchmarks/gpu_step.py compiled (inductor), nnU-Net 2d plan at ACC_STEP_BATCH (12, the training batch),
#      one run per module (ACC_STEP_TRAINERS: cSE, sSE, scSE, SRM, FCA), each with the baseline, into
#      $OUT/gpu_step_<trainer>/ (a cut run loses one module; the inductor cache makes the repeated baseline cheap);
#   4. mono: gpu_step.py --mono-fused, Mono's fused path vs its PyTorch path, eager, then compiled (ACC_STEP_MONO_S);
#   5. tests: tests/test_compile.py on CUDA (aot_eager), if pytest is installed there.
# Afterwards: benchmarks/results/ takes $OUT/acceptance.{json,md} and $OUT/gpu_step_*/gpu_step.{json,md};
# docs/modules.md the headline numbers.
set -uo pipefail
: "${OUT:?set OUT (the device machine sets it)}"
mkdir -p "$OUT"
START=$(date +%s)
DEVICE=${ACC_DEVICE:-cuda}
MIN_S=${ACC_MIN_S:-20}
STAGES=" ${ACC_STAGES:-train predict steps mono tests} "
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STEP_TRAINERS=(${ACC_STEP_TRAINERS:-nnUNetTrainerCSE nnUNetTrainerSSE nnUNetTrainerSCSE nnUNetTrainerSRM nnUNetTrainerFCA})
if [ "$DEVICE" = cpu ]; then  # dry-run sizes
  N_TRAIN=${ACC_N_TRAIN:-20} N_TEST=${ACC_N_TEST:-2} SIZE=${ACC_SIZE:-64} EPOCHS=${ACC_EPOCHS:-2}
  ITERATIONS=${ACC_ITERATIONS:-2} VAL_CASES=${ACC_VAL_CASES:-2} NP=${ACC_NP:-1}
  STEP_ARGS=(--size 32 --auto-batch 2 --rounds 1 --steps 1 --warmup 0 --backend aot_eager)
  export nnUNet_def_n_proc=${nnUNet_def_n_proc:-1}
  TRAIN_ENV=(nnUNet_n_proc_DA=0)  # planning calls torch.set_num_threads(nnUNet_n_proc_DA): train/predict only
  TOTAL_S=1800 PREP_S=400 TRAIN_S=(400 400) PREDICT_S=200 STEP_S=300 MONO_S=300  # slow shared CPU: flow only
else
  N_TRAIN=${ACC_N_TRAIN:-240} N_TEST=${ACC_N_TEST:-4} SIZE=${ACC_SIZE:-224} EPOCHS=${ACC_EPOCHS:-2}
  ITERATIONS=${ACC_ITERATIONS:-20} VAL_CASES=${ACC_VAL_CASES:-4} NP=${ACC_NP:-8}
  STEP_ARGS=(--auto-batch "${ACC_STEP_BATCH:-12}" --rounds 3 --steps 5 --warmup 1)
  TRAIN_ENV=()
  TOTAL_S=540 PREP_S=80 TRAIN_S=(120 190) PREDICT_S=40 STEP_S=80 MONO_S=220
fi
DEADLINE=$(( START + ${ACC_TOTAL_S:-$TOTAL_S} ))
STEP_S=${ACC_STEP_S:-$STEP_S} MONO_S=${ACC_STEP_MONO_S:-$MONO_S}
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
wants() { [[ "$STAGES" == *" $1 "* ]]; }
# budget NAME SECONDS: prints the stage's time limit (its budget or the time left), or fails when under MIN_S is left
budget() {
  local left=$(( DEADLINE - $(date +%s) - 10 ))  # 10 s: timeout -k 10 plus the summary
  local limit=$(( $2 < left ? $2 : left ))
  if [ "$left" -lt "$MIN_S" ]; then say "$1: skipped, ${left}s left before the deadline" >&2; return 1; fi
  echo "$limit"
}
elapsed() { echo $(( $(date +%s) - $1 )); }
rc() { if [ "$1" -ge 124 ]; then echo "rc=$1 (time limit)"; else echo "rc=$1"; fi; }  # 124/137: timeout
refresh() { python3 "$HERE/gpu_acceptance_summary.py" "$OUT" > "$OUT/summary_refresh.log" 2>&1; }

python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')" 2>&1 | tee -a "$summary"
say "device=$DEVICE stages=${STAGES# } n_train=$N_TRAIN size=$SIZE epochs=$EPOCHS iterations=$ITERATIONS" \
  "val_cases=$VAL_CASES nnUNet_compile=${nnUNet_compile-unset} NNUNET_SE_MONO_FUSED=${NNUNET_SE_MONO_FUSED-unset}" \
  "nnUNet_extTrainer=${nnUNet_extTrainer:-}"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

# ---- 0. dataset -----------------------------------------------------------------------------------------------------
if (wants train || wants predict) && limit=$(budget dataset "${ACC_PREP_S:-$PREP_S}"); then
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
  if limit=$(budget preprocess "${ACC_PREP_S:-$PREP_S}"); then
    t0=$(date +%s)
    timeout -k 10 "$limit" nnUNetv2_plan_and_preprocess -d 990 -c 2d -np "$NP" -npfp "$NP" > "$OUT/preprocess.log" 2>&1
    say "preprocess $(rc $?) $(elapsed "$t0")s"
    plans=$nnUNet_preprocessed/Dataset990_GpuAcceptance/nnUNetPlans.json
    cp "$plans" "$OUT/" 2>/dev/null
    python3 -c "import json, sys; c = json.load(open(sys.argv[1]))['configurations']['2d']; \
print('plan 2d: batch', c['batch_size'], 'patch', c['patch_size'], 'features', \
c['architecture']['arch_kwargs']['features_per_stage'])" "$plans" 2>&1 | tee -a "$summary"
  fi
fi

# ---- 1. nnUNetv2_train with nnU-Net's defaults ----------------------------------------------------------------------
TRAINERS=(RecalibrationTrainer nnUNetTrainerMono)
TRAIN_BUDGET=("${ACC_TRAIN_PLAIN_S:-${TRAIN_S[0]}}" "${ACC_TRAIN_MONO_S:-${TRAIN_S[1]}}")
if wants train; then
  for i in "${!TRAINERS[@]}"; do
    trainer=${TRAINERS[$i]}
    limit=$(budget "train $trainer" "${TRAIN_BUDGET[$i]}") || continue
    t0=$(date +%s)
    env "${TRAIN_ENV[@]}" NNUNET_SE_NUM_EPOCHS="$EPOCHS" NNUNET_SE_NUM_ITERATIONS="$ITERATIONS" NNUNET_SE_SEED=0 \
      TORCH_LOGS=recompiles,graph_breaks timeout -k 10 "$limit" \
      python3 "$HERE/nnunet_measured.py" train 990 2d 0 -tr "$trainer" "${DEV_ARGS[@]}" > "$OUT/train_$trainer.log" 2>&1
    say "train $trainer $(rc $?) wall=$(elapsed "$t0")s (limit ${limit}s)"
    refresh
  done
fi

# ---- 2. nnUNetv2_predict --------------------------------------------------------------------------------------------
if wants predict; then
  for trainer in "${TRAINERS[@]}"; do
    [ -f "$nnUNet_results/Dataset990_GpuAcceptance/${trainer}__nnUNetPlans__2d/fold_0/checkpoint_final.pth" ] || {
      say "predict $trainer: skipped, no checkpoint_final.pth"; continue; }
    limit=$(budget "predict $trainer" "${ACC_PREDICT_S:-$PREDICT_S}") || continue
    t0=$(date +%s)
    env "${TRAIN_ENV[@]}" timeout -k 10 "$limit" python3 "$HERE/nnunet_measured.py" predict \
      -i "$nnUNet_raw/Dataset990_GpuAcceptance/imagesTs" -o "/tmp/acc/predict_$trainer" -d 990 -c 2d -f 0 \
      -tr "$trainer" -chk checkpoint_final.pth "${DEV_ARGS[@]}" > "$OUT/predict_$trainer.log" 2>&1
    say "predict $trainer $(rc $?) wall=$(elapsed "$t0")s for $N_TEST cases (process start included)"
    refresh
  done
fi

# ---- 3./4. gpu_step: compiled 2d-plan steps per module, Mono fused vs PyTorch ---------------------------------------
step() {  # step PART BUDGET ARGS...: one gpu_step.py run (nnU-Net 2d plan) into $OUT/gpu_step_PART/
  local part=$1 limit t0
  limit=$(budget "gpu_step $part" "$2") || return 0
  shift 2
  t0=$(date +%s)
  timeout -k 10 "$limit" python3 "$HERE/gpu_step.py" --device "$DEVICE" "${STEP_ARGS[@]}" --families auto \
    --out "$OUT/gpu_step_$part" "$@" > "$OUT/gpu_step_$part.log" 2>&1
  say "gpu_step $part $(rc $?) wall=$(elapsed "$t0")s (limit ${limit}s)"
  refresh
}
if wants steps; then
  for trainer in "${STEP_TRAINERS[@]}"; do
    step "$trainer" "$STEP_S" --modes compiled --trainers "$trainer" --compile "nnUNetTrainer,$trainer"
  done
fi
if wants mono; then  # Mono's fused path vs its PyTorch path: eager (seconds), then compiled (three compiles)
  step mono_fused_eager "$STEP_S" --modes eager --trainers nnUNetTrainerMono --mono-fused
  step mono_fused_compiled "$MONO_S" --modes compiled --trainers nnUNetTrainerMono \
    --compile nnUNetTrainer,nnUNetTrainerMono --mono-fused
fi

# ---- 5. compile tests on CUDA ---------------------------------------------------------------------------------------
if ! wants tests; then
  :
elif ! python3 -c "import pytest" 2>/dev/null; then
  say "test_compile: skipped, pytest is not installed"
elif [ "$DEVICE" = cpu ]; then
  say "test_compile: skipped on the CPU dry run (the suite runs it)"
elif limit=$(budget test_compile "${ACC_TESTS_S:-60}"); then
  NNUNET_SE_COMPILE_DEVICE=cuda NNUNET_SE_COMPILE_BACKEND=aot_eager timeout -k 10 "$limit" \
    python3 -m pytest -q -p no:randomly -p no:cacheprovider tests/test_compile.py -k "module_compiles or sequence" \
    > "$OUT/test_compile_cuda.log" 2>&1
  say "test_compile (cuda) $(rc $?) $(tail -1 "$OUT/test_compile_cuda.log")"
fi

refresh
cat "$OUT/acceptance.md" >> "$summary" 2>/dev/null
cat "$OUT/acceptance.md" 2>/dev/null
say "total wall $(elapsed "$START")s"
