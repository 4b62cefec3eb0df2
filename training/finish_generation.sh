#!/usr/bin/env bash
# Measure the next generation of the shipped Fidelity model once its run has finished, the way
# every generation since the ninth was measured (README "Quality", issue #6's notes):
#
#   training/finish_generation.sh 13            # runs/cpu-fidelity-13, trained by
#                                               # cxr-train psnr --config cpu-fidelity-continue --run-dir runs/cpu-fidelity-13
#   DRY_RUN=1 training/finish_generation.sh 13  # print the commands only
#
# It waits while a `cxr-train psnr` is still running, then:
#  1. exports the run's best EMA over resources/models/cxr-fidelity-x4 (the default model);
#  2. evaluates Fidelity, Fast and Robust on the 41 val images under both protocols (fp32),
#     writing the numbers into the three cards, the crop figure and the JSON report, and redraws
#     the seed-128to512 crop figure;
#  3. compares the new generation with the one it replaces (the committed report at HEAD),
#     image by image, and Fidelity and Robust with Fast;
#  4. measures Robust and Fidelity in bf16 (x4-native) into their cards;
#  5. redraws the lineage figure.
# Everything goes to docs/ and resources/ in the working tree (review with git diff) and the
# report of the generation replaced to $OUT (default /tmp/fidelity-genN). About 15 min on a quiet 2-core CPU.
# What it does not do: decide. Keep the new weights only if the comparison says they are better
# (`git checkout resources/models docs` otherwise), then update the README's numbers
# (tests/test_published_numbers.py checks them), add the generation to the preset's comment,
# re-export with --note, and run `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:?usage: training/finish_generation.sh N (the generation, e.g. 13)}
PREV=$((N - 1))
RUN=runs/cpu-fidelity-$N
OUT=${OUT:-/tmp/fidelity-gen$N}
VAL=../shared/data/cxr14/val
B=docs/benchmarks
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
git show "HEAD:$B/eval_val_models_fp32.json" > "$OUT/before.json"  # the generation being replaced

to "$OUT/export.txt" cxr-train export "$RUN" --name cxr-fidelity-x4 --title Fidelity --default
to "$B/eval_val_models_fp32.txt" cxr-enhance eval "$VAL" "${MODELS[@]}" --precision fp32 --update-card \
    --crops docs/screenshots/crops_models.png --json-out "$B/eval_val_models_fp32.json"
to "$OUT/eval_seed_crops.txt" cxr-enhance eval "$VAL" "${MODELS[@]}" --protocol seed-128to512 --precision fp32 \
    --crops docs/screenshots/crops_models_seed.png  # --crops draws the first protocol evaluated
to "$B/compare_fidelity_gen${PREV}_to_gen${N}_fp32.txt" cxr-enhance compare "$OUT/before.json" "$B/eval_val_models_fp32.json"
to "$B/compare_fast_to_fidelity_fp32.txt" cxr-enhance compare "$B/eval_val_models_fp32.json" --methods cxr-fast-x4 cxr-fidelity-x4
to "$B/compare_fast_to_robust_fp32.txt" cxr-enhance compare "$B/eval_val_models_fp32.json" --methods cxr-fast-x4 cxr-robust-x4
for model in robust fidelity; do
  to "$B/eval_val_${model}_bf16.txt" cxr-enhance eval "$VAL" --model "cxr-$model-x4" --protocol x4-native \
      --precision bf16 --update-card --json-out "$B/eval_val_${model}_bf16.json"
done
to "$B/lineage_fidelity.txt" cxr-train lineage cxr-fidelity-x4 --reference cxr-fast-x4 \
    --out docs/screenshots/training_fidelity_lineage.png \
    --title "Fidelity (cxr-fidelity-x4): $N CPU runs, each from the weights the one before shipped"
[[ -n "${DRY_RUN:-}" ]] || cat "$B/compare_fidelity_gen${PREV}_to_gen${N}_fp32.txt"
echo "Done. Review git diff; $B/compare_fidelity_gen${PREV}_to_gen${N}_fp32.txt replaces the previous generation's compare file (git rm that one, and update the README's link)."
