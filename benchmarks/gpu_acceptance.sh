#!/usr/bin/env bash
# Issue 10's GPU acceptance run, as ONE device call (about 9 minutes; not run yet: no GPU in the session that wrote it).
#   here:    bash ../shared/tools/gpu/prepare.sh
#   device:  carry [".gpu"], command: source .gpu/device_setup.sh && bash benchmarks/gpu_acceptance.sh
# Every stage has its own time limit (seconds, overridable by the variables below) and writes under $OUT as it goes,
# so a stage that runs out of time still leaves its log; $OUT/summary.txt collects the headline lines.
#   1. nnUNetv2_train 2d fold 0 with nnU-Net's defaults (torch.compile on, fp16 autocast + GradScaler) on a synthetic
#      224x224 dataset: RecalibrationTrainer (nnU-Net's network, no module, honours NNUNET_SE_*) vs nnUNetTrainerMono,
#      1 epoch x ACC_ITERATIONS iterations plus the final validation, TORCH_LOGS=recompiles,graph_breaks;
#   2. benchmarks/gpu_step.py: every trainer eager, the baselines and Mono compiled (gpu_step.{json,md});
#   3. tests/test_compile.py on CUDA (aot_eager; modules + representative networks), if pytest is installed there.
# Afterwards copy $OUT/gpu_step.{json,md} to benchmarks/results/ and the summary into docs/modules.md.
set -uo pipefail
: "${OUT:?run this on the device machine, where \$OUT is set}"
TRAIN_S=${ACC_TRAIN_S:-140}
STEP_S=${ACC_STEP_S:-200}
TESTS_S=${ACC_TESTS_S:-60}
ITERATIONS=${ACC_ITERATIONS:-30}
summary="$OUT/summary.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
  | tee "$summary"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

# ---- 1. nnUNetv2_train with compile on ----------------------------------------------------------------------------
export nnUNet_raw=/tmp/acc/raw nnUNet_preprocessed=/tmp/acc/preprocessed nnUNet_results=/tmp/acc/results
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
python3 - <<'EOF' > "$OUT/dataset.log" 2>&1
import os
from pathlib import Path

from nnunet_se.synthetic import SyntheticSpec, write_synthetic_dataset

write_synthetic_dataset(Path(os.environ["nnUNet_raw"]), 990, "GpuAcceptance", SyntheticSpec(n_train=40, n_test=2),
                        Path(os.environ["nnUNet_preprocessed"]))
EOF
timeout 120 nnUNetv2_plan_and_preprocess -d 990 -c 2d -np 8 > "$OUT/preprocess.log" 2>&1
echo "preprocess rc=$?" | tee -a "$summary"
for trainer in RecalibrationTrainer nnUNetTrainerMono; do
  log="$OUT/train_$trainer.log"
  start=$(date +%s)
  NNUNET_SE_NUM_EPOCHS=1 NNUNET_SE_NUM_ITERATIONS=$ITERATIONS TORCH_LOGS=recompiles,graph_breaks \
    timeout "$TRAIN_S" nnUNetv2_train 990 2d 0 -tr "$trainer" > "$log" 2>&1
  rc=$?
  {
    echo "$trainer: rc=$rc wall=$(( $(date +%s) - start ))s" \
      "recompiles=$(grep -c 'Recompiling function' "$log")" \
      "graph_breaks=$(grep -ci 'graph break' "$log")"
    grep -m2 -E 'Epoch time|Mean Validation Dice' "$log" | sed 's/^/    /'
  } | tee -a "$summary"
done
cp -r "$nnUNet_results" "$OUT/nnunet_results" 2>/dev/null || true

# ---- 2. gpu_step benchmark ------------------------------------------------------------------------------------------
timeout "$STEP_S" python3 benchmarks/gpu_step.py --rounds 3 --steps 5 \
  --compile nnUNetTrainerPaper,nnUNetTrainerPaperMono,nnUNetTrainer,nnUNetTrainerMono --out "$OUT" \
  > "$OUT/gpu_step.log" 2>&1
echo "gpu_step rc=$?" | tee -a "$summary"
grep -E 'Mono|Trainer(Paper)? ' "$OUT/gpu_step.md" >> "$summary" 2>/dev/null || true

# ---- 3. compile tests on CUDA ---------------------------------------------------------------------------------------
if python3 -c "import pytest" 2>/dev/null; then
  NNUNET_SE_COMPILE_DEVICE=cuda NNUNET_SE_COMPILE_BACKEND=aot_eager timeout "$TESTS_S" \
    python3 -m pytest -q -p no:randomly -p no:cacheprovider tests/test_compile.py -k "module_compiles or sequence" \
    > "$OUT/test_compile_cuda.log" 2>&1
  echo "test_compile (cuda) rc=$? $(tail -1 "$OUT/test_compile_cuda.log")" | tee -a "$summary"
else
  echo "test_compile (cuda): skipped, pytest is not installed on the device" | tee -a "$summary"
fi
