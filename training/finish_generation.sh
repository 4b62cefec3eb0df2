#!/usr/bin/env bash
# Measure a newly trained Fidelity or Robust model once its run has finished, the way every one
# shipped since Fidelity's ninth generation was measured (README "Quality", issue #6's notes):
#
#   training/finish_generation.sh 16                         # Fidelity generation 16: runs/cpu-fidelity-16, trained by
#                                                            # cxr-train psnr --config cpu-fidelity-continue --run-dir runs/cpu-fidelity-16
#   training/finish_generation.sh robust runs/robust-24k     # a new Robust, trained by cxr-train psnr --config cpu-robust ...
#   RUN_DIR=runs/gpu-fidelity-16 training/finish_generation.sh 16   # generation 16 trained on a lent GPU
#   DRY_RUN=1 training/finish_generation.sh 16               # print the commands only
#
# It waits while a `cxr-train psnr` is still running, then:
#  1. exports the run's best EMA over the shipped model (resources/models/cxr-fidelity-x4, the
#     default, or cxr-robust-x4);
#  2. evaluates Fidelity, Fast and Robust on the 41 val images under both protocols (fp32),
#     writing the numbers into the three cards, the crop figure and the JSON report, and redraws
#     the seed-128to512 crop figure;
#  3. compares the new model with the one it replaces (the committed report at HEAD), image by
#     image, and Fidelity and Robust with Fast;
#  4. measures the new model in bf16 (x4-native) into its card (Fidelity: Robust too);
#  5. measures the three models on the two realistic chains (Robust and Fast fp32, Fidelity bf16)
#     into docs/benchmarks/eval_chain_models.txt, keeping its '#' header from HEAD;
#  6. Fidelity only: redraws the lineage figure.
# Everything goes to docs/ and resources/ in the working tree (review with git diff), the report of
# the model replaced to $OUT (default /tmp/fidelity-genN or /tmp/robust-RUNNAME). About 20 min on a
# quiet 2-core CPU.
# What it does not do: decide. Keep the new weights only if the comparison says they are better
# (`git checkout resources/models docs` otherwise), then update the README's numbers
# (tests/test_published_numbers.py checks them), the chain file's header, the preset's comment,
# re-export with --note, and run `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

USAGE="usage: training/finish_generation.sh N (Fidelity generation N, e.g. 16) | training/finish_generation.sh robust RUN_DIR"
ARG=${1:?$USAGE}
VAL=../shared/data/cxr14/val
B=docs/benchmarks
if [[ $ARG == robust ]]; then
  RUN=${2:?$USAGE}
  RUN=${RUN%/}
  MODEL=robust TITLE=Robust DEFAULT=()
  OUT=${OUT:-/tmp/robust-$(basename "$RUN")}
  COMPARE=$OUT/compare_robust_replaced_to_new_fp32.txt  # goes into the run's experiment file
  BF16=(robust)
elif [[ $ARG =~ ^[0-9]+$ ]]; then
  N=$ARG PREV=$((ARG - 1))
  RUN=${RUN_DIR:-runs/cpu-fidelity-$N}  # RUN_DIR: a generation trained elsewhere (a GPU run brought back by cxr-train unbundle)
  RUN=${RUN%/}
  MODEL=fidelity TITLE=Fidelity DEFAULT=(--default)
  OUT=${OUT:-/tmp/fidelity-gen$N}
  COMPARE=$B/compare_fidelity_gen${PREV}_to_gen${N}_fp32.txt
  BF16=(robust fidelity)
else
  echo "$USAGE" >&2; exit 2
fi
MODELS=(--model cxr-fidelity-x4 --model cxr-fast-x4 --model cxr-robust-x4)
# to FILE CMD...: run CMD with its stdout (the table) in FILE; DRY_RUN=1 prints it instead
to() { local file=$1; shift; if [[ -n "${DRY_RUN:-}" ]]; then echo "$* > $file"; else "$@" > "$file"; fi; }

[[ -d $RUN ]] || { echo "$RUN does not exist; train it first (see the comment at the top)." >&2; exit 2; }
if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  [[ -f .venv/bin/activate ]] || { echo "No .venv here; run make .venv/.installed first." >&2; exit 2; }
  source .venv/bin/activate
fi
mkdir -p "$OUT"
while [[ -z "${DRY_RUN:-}" ]] && pgrep -f "cxr-train psnr" > /dev/null; do sleep 30; done
git show "HEAD:$B/eval_val_models_fp32.json" > "$OUT/before.json"  # the model being replaced
git show "HEAD:$B/eval_chain_models.txt" > "$OUT/chains_before.txt"

to "$OUT/export.txt" cxr-train export "$RUN" --name "cxr-$MODEL-x4" --title "$TITLE" "${DEFAULT[@]}"
to "$B/eval_val_models_fp32.txt" cxr-enhance eval "$VAL" "${MODELS[@]}" --precision fp32 --update-card \
    --crops docs/screenshots/crops_models.png --json-out "$B/eval_val_models_fp32.json"
to "$OUT/eval_seed_crops.txt" cxr-enhance eval "$VAL" "${MODELS[@]}" --protocol seed-128to512 --precision fp32 \
    --crops docs/screenshots/crops_models_seed.png  # --crops draws the first protocol evaluated
to "$COMPARE" cxr-enhance compare "$OUT/before.json" "$B/eval_val_models_fp32.json"
to "$B/compare_fast_to_fidelity_fp32.txt" cxr-enhance compare "$B/eval_val_models_fp32.json" --methods cxr-fast-x4 cxr-fidelity-x4
to "$B/compare_fast_to_robust_fp32.txt" cxr-enhance compare "$B/eval_val_models_fp32.json" --methods cxr-fast-x4 cxr-robust-x4
for model in "${BF16[@]}"; do
  to "$B/eval_val_${model}_bf16.txt" cxr-enhance eval "$VAL" --model "cxr-$model-x4" --protocol x4-native \
      --precision bf16 --update-card --json-out "$B/eval_val_${model}_bf16.json"
done
for chain in mild default; do
  to "$OUT/chain_${chain}_robust_fast.txt" cxr-train eval-chain "$VAL" --model cxr-robust-x4 --model cxr-fast-x4 \
      --precision fp32 --chain "$chain"
  to "$OUT/chain_${chain}_fidelity.txt" cxr-train eval-chain "$VAL" --model cxr-fidelity-x4 --precision bf16 --chain "$chain"
done
if [[ -z "${DRY_RUN:-}" ]]; then
  { grep '^#' "$OUT/chains_before.txt"
    for chain in mild default; do
      for part in robust_fast fidelity; do echo; cat "$OUT/chain_${chain}_${part}.txt"; done
    done; } > "$B/eval_chain_models.txt"
fi
if [[ $MODEL == fidelity ]]; then
  to "$B/lineage_fidelity.txt" cxr-train lineage cxr-fidelity-x4 --reference cxr-fast-x4 \
      --out docs/screenshots/training_fidelity_lineage.png \
      --title "Fidelity (cxr-fidelity-x4): $N CPU runs, each from the weights the one before shipped"
fi
[[ -n "${DRY_RUN:-}" ]] || cat "$COMPARE"
if [[ $MODEL == fidelity ]]; then
  echo "Done. Review git diff; $COMPARE replaces the previous generation's compare file (git rm that one, and update the README's link)."
else
  echo "Done. Review git diff; put $COMPARE (the new Robust against the one it replaces) in the run's docs/benchmarks/experiment_robust_*.txt."
fi
