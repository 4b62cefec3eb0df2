#!/usr/bin/env bash
# One call's training on a lent GPU machine (the `device` tool). Runs THERE, in the repo root:
#
#   bash training/device_train.sh RUN MINUTES [cxr-train psnr|gan options...]
#
# The first call starts runs/RUN from $PRESET (default gpu-fidelity-continue) on the data packed
# by `cxr-train pack-data` into $DATA (default runs/devdata, carried by the call); a later call on
# the same, still-held machine resumes runs/RUN from its last.ckpt. Training stops after MINUTES
# with a validation and a checkpoint (--max-minutes), and every call ends by bundling the run's best
# EMA weights (fp16 parts) and small files into $OUT, which `cxr-train unbundle` turns back into
# runs/RUN here. STEPS=auto (first call only) sizes the run's schedule to MINUTES by a short probe;
# STEPS=N sets it. Plan: training/README.md, "On a lent GPU". DRY_RUN=1 prints the commands.
set -euo pipefail

RUN=${1:?usage: training/device_train.sh RUN MINUTES [cxr-train psnr options]}
MINUTES=${2:?usage: training/device_train.sh RUN MINUTES [cxr-train psnr options]}
shift 2
PRESET=${PRESET:-gpu-fidelity-continue}
DATA=${DATA:-runs/devdata}
PY=${PYTHON:-python3}
: "${OUT:?OUT must name the folder whose files come back (the device tool sets it)}"

run() {
    echo "+ $*"
    if [ -z "${DRY_RUN:-}" ]; then "$@"; fi
}

if [ ! -d "$DATA/train" ] || [ ! -d "$DATA/val" ]; then
    echo "device_train: $DATA/train and $DATA/val are missing; pack them here with cxr-train pack-data and carry them." >&2
    exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The stage (the cxr-train command) is the preset's own: a gan preset trains the GAN stage.
STAGE=$("$PY" -c 'import sys; from training.config import load_config; print(load_config(sys.argv[1]).stage)' "$PRESET")
if [ -z "${DRY_RUN:-}" ]; then
    "$PY" -c 'import torch; print("torch", torch.__version__, "| CUDA:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none, training on the CPU")'
    # The GAN stage ("Sharp") needs torchvision's VGG19 ImageNet weights, absent here; say whether
    # this machine holds a copy (it cannot download one).
    echo "VGG19 weights on this machine: $(find "$HOME/.cache" /opt /root -maxdepth 7 -iname 'vgg19*' 2>/dev/null | head -3 | tr '\n' ' ')"
fi
data=(--set "data.train=$DATA/train" --set "data.val=$DATA/val")
resume=()
planned=()
if [ -f "runs/$RUN/last.ckpt" ]; then
    resume=(--resume)
elif [ -n "${STEPS:-}" ]; then
    # STEPS=auto: a 300-step probe measures this machine's it/s, and the run's cosine schedule is
    # sized to end inside MINUTES (85 %: the rest is validation and checkpoints); --max-minutes
    # stays the hard stop. STEPS=N sets the steps outright.
    steps=$STEPS
    if [ "$STEPS" = auto ]; then
        run rm -rf "runs/$RUN-probe"
        run "$PY" -m training.cli "$STAGE" --config "$PRESET" --run-dir "runs/$RUN-probe" --steps 300 \
            --set steps=100000 --set log_every=100 "${data[@]}" "$@"
        steps=1000
        if [ -z "${DRY_RUN:-}" ]; then
            steps=$("$PY" -m training.device plan-steps "runs/$RUN-probe" "$MINUTES")
        fi
    fi
    planned=(--set "steps=$steps")
fi
run "$PY" -m training.cli "$STAGE" --config "$PRESET" --run-dir "runs/$RUN" "${resume[@]}" \
    --max-minutes "$MINUTES" "${data[@]}" "${planned[@]}" "$@"
run "$PY" -m training.cli bundle "runs/$RUN" --out "$OUT"
