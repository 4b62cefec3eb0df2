"""Training on a machine lent for minutes at a time (the `device` tool): what travels there and back.

A lent GPU machine gets the repository's working tree and the paths a call carries, 64 MiB in
all; a command runs for at most 10 minutes; files stay there while the machine is held; at most
8 files of at most 16 MiB each come back. So:

- `pack_data` (here) copies a training subset, cut into parts that each fit one call beside the
  tree, and the validation images the run validates on (the first `val_crops` of the val folder,
  as the trainer takes them), with a manifest of sha256;
- `cxr-train psnr ... --max-minutes M` (there) stops inside the call with a checkpoint that the
  next call on the same machine resumes;
- `bundle_run` (there) writes a run's best EMA weights in fp16, cut into parts, and the run's
  small files (config, log, run.json, the parent card) into a folder of at most 8 files;
- `unbundle_run` (here) checks every sha256 and rebuilds the run folder, `best_ema.pt` in fp32
  from the fp16 weights (export casts them back to the same fp16), so `cxr-train export`,
  `cxr-train report` and `training/finish_generation.sh` work on it as on a local run.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from engine.fileio import file_sha256
from training.checkpoints import BEST_NAME, CHECKPOINT_NAME, load_run_file
from training.data import DataError, list_images, patient_of

MIB = 1 << 20
CALL_LIMIT = 64 * MIB  # the working tree and the carried paths of one call
FILE_LIMIT = 16 * MIB  # one file back from $OUT
FILES_BACK = 8  # files back from $OUT
PART_BYTES = 15 * MIB  # under FILE_LIMIT with room to spare
MARGIN = 2 * MIB
MANIFEST = "manifest.json"
BUNDLE_TAR = "run.tar.gz"
BUNDLE_INFO = "bundle.json"
WEIGHTS_NAME = "best_ema.fp16.safetensors"
# The run's small files that travel back (a missing one is skipped); checkpoints do not fit.
RUN_FILES = ("config.yaml", "run.json", "log.csv", "init_card.json")


def tracked_tree_bytes(repo: Path) -> int:
    """Bytes of the files git tracks in `repo`: what every call sends before the carried paths."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise DataError(f"{repo} is not a git checkout, so the size of what a call sends is unknown; "
                        "give --max-mib.") from None
    return sum((repo / name).stat().st_size for name in out.decode().split("\0")
               if name and (repo / name).is_file())


def _patient_spread(files: list[Path], seed: int) -> list[Path]:
    """Shuffled, then each patient's first image before any patient's second (more patients per MiB)."""
    order = list(files)
    random.Random(seed).shuffle(order)
    seen: Counter[str] = Counter()
    ranked = []
    for index, path in enumerate(order):
        patient = patient_of(path)
        ranked.append((seen[patient], index, path))
        seen[patient] += 1
    return [path for _, _, path in sorted(ranked)]


def pack_data(train: str | Path, val: str | Path, out: str | Path, *, max_mib: float | None = None,
              parts: int = 1, val_images: int = 8, seed: int = 0, repo: str | Path = ".") -> dict[str, Any]:
    """Copy a training subset into `out/train/part-K` (each part fits one call) and `out/val`.

    `max_mib` is what one call may carry beside the tree; by default 64 MiB less the tracked tree
    of `repo` and a 2 MiB margin. Part 1 also holds the validation images. Files are copied byte
    for byte (sha256 in the manifest), never re-encoded.
    """
    out = Path(out)
    if parts < 1:
        raise DataError(f"--parts takes 1 or more, not {parts}.")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} already holds files; remove it or pack into another folder.")
    budget = int(max_mib * MIB) if max_mib is not None else CALL_LIMIT - tracked_tree_bytes(Path(repo)) - MARGIN
    if budget <= 0:
        raise DataError("Nothing can be carried: the tracked tree already fills a call's 64 MiB.")
    val_files = list_images(val)[:val_images]
    train_files = _patient_spread(list_images(train), seed)
    val_bytes = sum(p.stat().st_size for p in val_files)
    if val_bytes > budget:
        raise DataError(f"The {len(val_files)} validation images ({val_bytes / MIB:.1f} MiB) do not fit in "
                        f"{budget / MIB:.1f} MiB; give fewer with --val-images.")
    chosen: list[list[Path]] = [[] for _ in range(parts)]
    room = [budget - val_bytes] + [budget] * (parts - 1)
    part = 0
    for path in train_files:
        size = path.stat().st_size
        while part < parts and size > room[part]:
            part += 1
        if part == parts:
            break
        chosen[part].append(path)
        room[part] -= size
    if not chosen[0]:
        raise DataError(f"No training image fits beside the validation images in {budget / MIB:.1f} MiB.")
    manifest: dict[str, Any] = {
        "source": {"train": str(train), "val": str(val)}, "seed": seed, "budget_bytes": budget,
        "train_images_available": len(train_files), "val": [], "parts": [], "sha256": {},
    }
    out.mkdir(parents=True, exist_ok=True)
    for rel, files in [("val", val_files)] + [(f"train/part-{k + 1}", f) for k, f in enumerate(chosen)]:
        folder = out / rel
        folder.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, folder / path.name)
            manifest["sha256"][f"{rel}/{path.name}"] = file_sha256(folder / path.name)
        names = [p.name for p in files]
        if rel == "val":
            manifest["val"] = names
        else:
            manifest["parts"].append({"folder": rel, "images": names,
                                      "patients": len({patient_of(p) for p in files}),
                                      "bytes": sum(p.stat().st_size for p in files)})
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def describe_pack(manifest: dict[str, Any], out: Path) -> str:
    used = [p for p in manifest["parts"] if p["images"]]
    images = sum(len(p["images"]) for p in used)
    patients = len({patient_of(name) for p in used for name in p["images"]})
    lines = [f"packed {images} of {manifest['train_images_available']} training images "
             f"({patients} patients) in {len(used)} part(s) of at most "
             f"{manifest['budget_bytes'] / MIB:.1f} MiB, and {len(manifest['val'])} validation images, into {out}"]
    for k, part in enumerate(used):
        carry = [f"{out}/{part['folder']}"] + ([f"{out}/val", f"{out}/{MANIFEST}"] if k == 0 else [])
        lines.append(f"  call {k + 1} carries {json.dumps(carry)} ({part['bytes'] / MIB:.1f} MiB of training images)")
    return "\n".join(lines)


def _split(data: bytes, part_bytes: int) -> list[bytes]:
    return [data[i:i + part_bytes] for i in range(0, len(data), part_bytes)] or [b""]


def bundle_run(run_dir: str | Path, out: str | Path, *, part_bytes: int = PART_BYTES) -> list[Path]:
    """The run's best EMA weights (fp16, in parts) and small files, as at most 8 files in `out`."""
    from safetensors.torch import save

    run_dir, out = Path(run_dir), Path(out)
    if not 0 < part_bytes <= FILE_LIMIT:
        raise DataError(f"A part must be 1 byte to 16 MiB, not {part_bytes} bytes.")
    source = run_dir / BEST_NAME if (run_dir / BEST_NAME).is_file() else run_dir / CHECKPOINT_NAME
    data = load_run_file(source)
    state = data.get("ema") or data["model"]
    weights = save({k: v.detach().to(torch.float16).contiguous() for k, v in state.items()})
    pieces = _split(weights, part_bytes)
    if len(pieces) + 1 > FILES_BACK:
        raise DataError(f"{len(pieces)} parts of weights and the run's files are more than the {FILES_BACK} "
                        "files a call brings back.")
    out.mkdir(parents=True, exist_ok=True)
    names = [f"{WEIGHTS_NAME}.part-{k:02d}" for k in range(len(pieces))]
    for name, piece in zip(names, pieces, strict=True):
        (out / name).write_bytes(piece)
    info = {
        "run": run_dir.name, "from": source.name, "step": data.get("step"), "val": data.get("val", {}),
        "arch": data.get("arch"), "params": data.get("params"), "weights": WEIGHTS_NAME,
        "sha256": hashlib.sha256(weights).hexdigest(), "bytes": len(weights),
        "parts": [{"name": n, "sha256": hashlib.sha256(p).hexdigest()} for n, p in zip(names, pieces, strict=True)],
        "files": [name for name in RUN_FILES if (run_dir / name).is_file()],
    }
    with tarfile.open(out / BUNDLE_TAR, "w:gz") as tar:
        for name in info["files"]:
            tar.add(run_dir / name, arcname=name)
        blob = (json.dumps(info, indent=2) + "\n").encode()
        entry = tarfile.TarInfo(BUNDLE_INFO)
        entry.size = len(blob)
        tar.addfile(entry, io.BytesIO(blob))
    return [out / n for n in names] + [out / BUNDLE_TAR]


def unbundle_run(src: str | Path, run_dir: str | Path) -> dict[str, Any]:
    """Check a bundle and rebuild its run folder here (best_ema.pt from the fp16 weights)."""
    from safetensors.torch import load

    src, run_dir = Path(src), Path(run_dir)
    if not (src / BUNDLE_TAR).is_file():
        raise DataError(f"{src} holds no {BUNDLE_TAR}; point at the folder the device call brought back.")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise DataError(f"{run_dir} already holds files; unbundle into a new run folder.")
    with tarfile.open(src / BUNDLE_TAR, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        if BUNDLE_INFO not in members:
            raise DataError(f"{src / BUNDLE_TAR} has no {BUNDLE_INFO}; it was not written by cxr-train bundle.")
        info = json.loads(tar.extractfile(members[BUNDLE_INFO]).read())  # type: ignore[union-attr]
        files = {}
        for name in info["files"]:
            member = members.get(name)
            if name not in RUN_FILES or member is None or not member.isfile():
                raise DataError(f"{src / BUNDLE_TAR} lists {name!r}, which is not one of the run's files.")
            files[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    blob = b""
    for part in info["parts"]:
        path = src / part["name"]
        if not path.is_file():
            raise DataError(f"{path.name} is missing from {src}; fetch all {len(info['parts'])} parts.")
        piece = path.read_bytes()
        if hashlib.sha256(piece).hexdigest() != part["sha256"]:
            raise DataError(f"{path.name} is damaged (sha256 differs); fetch it again.")
        blob += piece
    if hashlib.sha256(blob).hexdigest() != info["sha256"]:
        raise DataError(f"The joined weights' sha256 differs from {BUNDLE_INFO}'s; fetch the parts again.")
    state = {k: v.to(torch.float32) for k, v in load(blob).items()}
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (run_dir / name).write_bytes(content)
    torch.save({"ema": state, "step": info["step"], "val": info["val"], "arch": info["arch"],
                "params": info["params"]}, run_dir / BEST_NAME)
    return info


def planned_steps(probe_run: str | Path, minutes: float, share: float = 0.85) -> int:
    """Steps that fit `share` of `minutes` at the speed a probe run logged (after its first row,
    which holds the start-up: cuDNN's kernel search, the first batches)."""
    from training.report import _timeline

    rows = _timeline(Path(probe_run))
    if len(rows) < 2 or rows[-1][1] <= rows[0][1]:
        raise DataError(f"{probe_run}/log.csv has too few rows to measure a speed; run the probe longer.")
    rate = (rows[-1][0] - rows[0][0]) / (rows[-1][1] - rows[0][1])
    return max(1, int(rate * 60 * minutes * share))


if __name__ == "__main__":  # `python -m training.device plan-steps PROBE_RUN MINUTES` (device_train.sh)
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "plan-steps":
        sys.exit("usage: python -m training.device plan-steps PROBE_RUN MINUTES")
    print(planned_steps(sys.argv[2], float(sys.argv[3])))
