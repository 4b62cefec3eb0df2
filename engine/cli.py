"""`cxr-enhance`: enhance files or folders, list models, measure quality, measure speed.

Exit codes: 0 all succeeded, 1 something failed (each failure reported in one sentence), 2 usage
error (argparse's own convention), 130 interrupted. Heavy imports (torch, pydicom) happen inside
the subcommands so that `--help` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from engine import __version__
from engine.sr.ranges import network_range

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
FORMATS = ("dicom", "png", "png16", "tiff")
EXTENSIONS = {"dicom": ".dcm", "png": ".png", "png16": ".png", "tiff": ".tiff"}


class UsageError(Exception):
    """A bad argument value that argparse could not catch; exit code 2."""


# --- progress ----------------------------------------------------------------------------------

class ProgressBar:
    """Tiles done and ETA: one redrawn line on a terminal, a few plain lines otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None, *, enabled: bool = True,
                 every_s: float = 5.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self._last_line = -1e9
        self._drawn = False

    def __call__(self, progress: Any) -> None:
        if not self.enabled:
            return
        done, total = int(progress.done), int(progress.total)
        eta = getattr(progress, "eta_s", None)
        if self.tty:
            self._draw(done, total, eta)
            return
        now = time.monotonic()
        if done == total or now - self._last_line >= self.every_s:
            self._last_line = now
            self.stream.write(f"{self.label}: {done}/{total} tiles{_eta_text(eta)}\n")
            self.stream.flush()

    def _draw(self, done: int, total: int, eta: float | None) -> None:
        width = 24
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} tiles{_eta_text(eta)}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


def _eta_text(eta: float | None) -> str:
    if eta is None or eta != eta or eta < 0:  # None, NaN or unknown
        return ""
    minutes, seconds = divmod(int(round(eta)), 60)
    return f", ETA {minutes}:{seconds:02d}"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- enhance: planning outputs ------------------------------------------------------------------

@dataclass
class Job:
    """One image to enhance and where its result goes."""

    image: Any  # engine.io Image
    root: Path | None  # the folder argument it was found under, if any
    fmt: str = ""
    out_path: Path | None = None
    value_range: tuple[float, float] | None = None


@dataclass
class Tally:
    succeeded: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, sentence: str) -> None:
        self.failures.append(sentence)
        say(f"skipped: {sentence}")


def choose_format(image: Any, requested: str | None) -> str:
    """The output format for one image; raises ValueError with a sentence when impossible."""
    is_dicom = bool(getattr(image, "is_dicom", False))
    if requested is None:
        if is_dicom:
            return "dicom"
        return "png16" if _bits(image) > 8 else "png"
    if requested == "dicom" and not is_dicom:
        raise ValueError("--format dicom needs a DICOM input; use png, png16 or tiff for it.")
    return requested


def _bits(image: Any) -> int:
    return int(getattr(image, "bits_stored", 8) or 8)


def output_name(image: Any, fmt: str) -> str:
    stem = Path(str(image.path)).stem
    if int(getattr(image, "frames", 1) or 1) > 1:
        stem += f"_f{int(image.frame)}"
    return f"{stem}_x4{EXTENSIONS[fmt]}"


def output_path(job: Job, out_dir: Path) -> Path:
    """<out>/<path below the folder argument>/<stem>_x4.<ext>; files given directly go flat."""
    source = Path(str(job.image.path))
    relative_dir = Path()
    if job.root is not None:
        try:
            relative_dir = source.resolve().parent.relative_to(job.root.resolve())
        except ValueError:
            relative_dir = Path()
    # A ZIP member's path runs through the archive ("a.zip/IMG1"): use "a/" as the folder.
    parts = [Path(p).stem if p.lower().endswith(".zip") else p for p in relative_dir.parts]
    return out_dir.joinpath(*parts) / output_name(job.image, job.fmt)


def disambiguate(path: Path, source: Path, taken: set[Path]) -> Path:
    """a.png and a.tif in one folder would both become a_x4.png: name the second a_tif_x4.png."""
    if path.resolve() not in taken:
        return path
    suffix = source.suffix.lstrip(".").lower() or "src"
    candidate = path.with_name(path.name.replace("_x4", f"_{suffix}_x4", 1))
    n = 2
    while candidate.resolve() in taken:
        candidate = path.with_name(path.name.replace("_x4", f"_{suffix}{n}_x4", 1))
        n += 1
    return candidate


def value_range_for(image: Any, values: Any, result: Any = None) -> tuple[float, float]:
    """The range PNG/TIFF output maps to full scale: nominal bit depth, or for DICOM the range
    Enhance mapped (its min..max without Pixel Padding, as the viewer's export uses)."""
    if getattr(image, "is_dicom", False):
        mapped = getattr(result, "value_range", None)
        if mapped is not None:
            return float(mapped[0]), float(mapped[1])
        return float(values.min()), float(values.max())
    return 0.0, float(2 ** (16 if _bits(image) > 8 else 8) - 1)


def displays_inverted(image: Any) -> bool:
    """MONOCHROME1 / INVERSE: high values display dark, so the network must see them flipped."""
    from engine.display import shows_inverted

    return shows_inverted(getattr(image, "photometric", None),
                          getattr(image, "presentation_lut_shape", None))


# --- enhance: running ---------------------------------------------------------------------------

def scan_inputs(inputs: Sequence[str], tally: Tally, out_dir: Path | None = None) -> list[Job]:
    """Every image under the inputs, read before anything is written (outputs may land there).

    When `out_dir` sits inside an input folder (`enhance study/ -o study/x4`), what is under it is
    left out: a second run must not enhance the first run's results again (x16, and the memory
    that takes). An -o that *is* the input folder writes beside the inputs and is scanned as usual.
    """
    from engine import io as engine_io

    out = out_dir.resolve() if out_dir is not None else None
    jobs: list[Job] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            tally.fail(f"{item}: no such file or folder.")
            continue
        root = path if path.is_dir() else None
        skip = out if root is not None and out is not None and _strictly_inside(out, root.resolve()) else None
        ignored = 0
        for event in engine_io.scan(path):
            found = event.image if event.kind == "image" else event.problem
            if skip is not None and found is not None and _under(found, skip):
                ignored += 1
                continue
            if event.kind == "image" and event.image is not None:
                jobs.append(Job(event.image, root))
            elif event.kind == "problem" and event.problem is not None:
                report_problem(event.problem, inside_folder=root is not None, tally=tally)
        if ignored:
            say(f"ignored: {ignored} file(s) under {out_dir}, the output folder inside {item}; "
                "results are not enhanced again (give -o a folder outside the inputs to avoid this).")
    return jobs


def _strictly_inside(path: Path, folder: Path) -> bool:
    return path != folder and path.is_relative_to(folder)


def _under(found: Any, folder: Path) -> bool:
    """Whether an image or problem comes from a file below `folder` (a ZIP member: the ZIP)."""
    for attr in ("source_file", "path"):
        value = getattr(found, attr, None)
        if value:
            try:
                return Path(str(value)).resolve().is_relative_to(folder)
            except (OSError, ValueError):
                return False
    return False


def report_problem(problem: Any, *, inside_folder: bool, tally: Tally) -> None:
    """A broken file is a failure; a readable non-image found in a folder is only mentioned."""
    sentence = f"{problem.path}: {_sentence(problem.reason)}"
    if inside_folder and getattr(problem, "skipped", False):
        say(f"ignored: {sentence}")
    else:
        tally.fail(sentence)


def _sentence(text: str) -> str:
    text = str(text).strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def plan_outputs(jobs: list[Job], out_dir: Path, requested: str | None, tally: Tally) -> list[Job]:
    """Give each job a format and a path; drop (and report) jobs that cannot be written."""
    inputs = {Path(str(p)).resolve() for j in jobs
              for p in (j.image.path, getattr(j.image, "source_file", None) or j.image.path)}
    taken: set[Path] = set()
    planned = []
    for job in jobs:
        source = Path(str(job.image.path))
        try:
            job.fmt = choose_format(job.image, requested)
        except ValueError as exc:
            tally.fail(f"{source}: {exc}")
            continue
        path = disambiguate(output_path(job, out_dir), source, taken)
        if path.resolve() in inputs:
            tally.fail(f"{source}: the output {path} would overwrite an input; choose another -o.")
            continue
        taken.add(path.resolve())
        job.out_path = path
        planned.append(job)
    return planned


def enhance_one(job: Job, enhancer: Any, args: argparse.Namespace, label: str) -> Path:
    """Enhance one image's full-bit-depth values and write them; raises on any failure."""
    values = job.image.modality_values()
    bar = ProgressBar(label, enabled=not args.quiet)
    try:
        result = enhancer.enhance(values, progress=bar,
                                  value_range=network_range(job.image, values),
                                  inverted=displays_inverted(job.image))
    finally:
        bar.close()
    assert job.out_path is not None
    job.out_path.parent.mkdir(parents=True, exist_ok=True)
    return write_output(job, values, result, args)


def write_output(job: Job, values: Any, result: Any, args: argparse.Namespace) -> Path:
    from engine.io import export

    assert job.out_path is not None
    protect = [p for p in (job.image.path, getattr(job.image, "source_file", None)) if p]
    if job.fmt == "dicom":
        provenance = export.Provenance.from_result(result)
        return export.write_derived_dicom(job.image, result.image, job.out_path, provenance,
                                          anonymise=args.anonymise)
    # PNG and TIFF say in their text what made them, and open with the source's polarity
    value_range = value_range_for(job.image, values, result)
    provenance = export.Provenance.from_result(result)
    inverted = displays_inverted(job.image)
    if job.fmt == "tiff":
        return export.write_tiff16(result.image, job.out_path, value_range=value_range,
                                   inverted=inverted, provenance=provenance, protect=protect)
    bits = 16 if job.fmt == "png16" else 8
    return export.write_png(result.image, job.out_path, bits=bits, value_range=value_range,
                            inverted=inverted, provenance=provenance, protect=protect)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this file could not be done": reported in a sentence, then skipped."""
    errors: list[type[BaseException]] = [OSError, ValueError, MemoryError]
    for module, name in (("engine.io", "ReadError"), ("engine.io.export", "ExportError"),
                         ("engine.sr.enhancer", "EnhanceError"),
                         ("engine.sr.weights", "WeightsError")):
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _use_threads(args: argparse.Namespace) -> None:
    from engine.sr.device import set_cpu_threads

    set_cpu_threads(getattr(args, "threads", 0))


def load_enhancer(args: argparse.Namespace) -> Any:
    """The Enhancer for --model (default: the registry's default model)."""
    from engine.sr import registry
    from engine.sr.enhancer import Enhancer

    try:
        info = registry.find_model(args.model) if args.model else registry.default_model()
    except registry.NoModelInstalled:
        raise
    except (LookupError, ValueError) as exc:
        raise UsageError(_sentence(str(exc))) from None
    _use_threads(args)
    enhancer = Enhancer(info, device=args.device, precision=args.precision, tile=args.tile,
                        overlap=args.overlap)
    enhancer.load()  # a damaged model fails here once, not once per file
    return enhancer


def cmd_enhance(args: argparse.Namespace) -> int:
    from engine.sr import registry

    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {out_dir} is a file; give a folder for the results.")
    try:
        enhancer = load_enhancer(args)
    except registry.NoModelInstalled as exc:
        say(_sentence(str(exc)))
        return EXIT_FAILED
    except user_errors() as exc:
        say(_sentence(str(exc)))
        return EXIT_FAILED
    tally = Tally()
    jobs = plan_outputs(scan_inputs(args.inputs, tally, out_dir), out_dir, args.format, tally)
    run_jobs(jobs, enhancer, args, tally)
    return report_tally(tally)


def run_jobs(jobs: list[Job], enhancer: Any, args: argparse.Namespace, tally: Tally) -> None:
    errors = user_errors()
    total = len(jobs)
    for index in range(total):
        job = jobs[index]
        jobs[index] = None  # type: ignore[call-overload]  # let each image's pixels go when done
        source = Path(str(job.image.path))
        label = f"[{index + 1}/{total}] {source.name}"
        start = time.perf_counter()
        try:
            written = enhance_one(job, enhancer, args, label)
        except errors as exc:
            tally.fail(f"{source}: {_sentence(str(exc))}")
            continue
        except Exception as exc:  # a bug must not end the batch; say so plainly and go on
            tally.fail(f"{source}: internal error ({type(exc).__name__}: {exc}); please report it.")
            continue
        finally:
            release = getattr(job.image, "release", None)
            if release is not None:
                release()
        tally.succeeded += 1
        if not args.quiet:
            say(f"{label} -> {written} ({time.perf_counter() - start:.1f} s)")


def report_tally(tally: Tally) -> int:
    if tally.failures:
        say(f"{tally.succeeded} enhanced, {len(tally.failures)} failed.")
        return EXIT_FAILED
    if tally.succeeded == 0:
        say("No images found in the inputs.")
        return EXIT_FAILED
    say(f"{tally.succeeded} enhanced.")
    return EXIT_OK


# --- models -------------------------------------------------------------------------------------

def model_summary(info: Any, default_name: str | None) -> dict[str, Any]:
    """A card plus what is counted from the architecture (parameters, MACs per input pixel)."""
    card = info.card
    summary = card.to_dict()
    summary["default"] = card.name == default_name
    summary["weights_path"] = str(card.weights_path) if card.weights_path else None
    try:
        from engine.sr.archs import build_model, macs_per_input_pixel

        net = build_model(card.architecture, card.params)
        summary["param_count"] = int(sum(p.numel() for p in net.parameters()))
        summary["macs_per_input_pixel"] = float(macs_per_input_pixel(net))
    except (ValueError, RuntimeError, MemoryError) as exc:  # a card that builds no network
        summary["problem"] = _sentence(str(exc) or type(exc).__name__)
    return summary


def cmd_models(args: argparse.Namespace) -> int:
    from engine.sr import registry

    infos = registry.list_models()
    if not infos:
        message = (f"No models installed. Put a <name>.safetensors file and its <name>.json "
                   f"model card in {registry.install_dir()}.")
        if args.json:
            print(json.dumps({"models": [], "message": message}, indent=2))
        else:
            print(message)
        return EXIT_OK
    try:
        default_name = registry.default_model().card.name
    except registry.NoModelInstalled:
        default_name = None
    summaries = [model_summary(info, default_name) for info in infos]
    if args.json:
        print(json.dumps({"models": summaries}, indent=2, default=str))
    else:
        print("\n\n".join(format_model(s) for s in summaries))
    return EXIT_OK


def format_model(s: dict[str, Any]) -> str:
    marker = " (default)" if s.get("default") else ""
    params = s.get("param_count")
    macs = s.get("macs_per_input_pixel")
    lines = [f"{s['name']}{marker}: {s.get('title') or ''}".rstrip(": "),
             f"  architecture  {s['architecture']} {json.dumps(s.get('params', {}))}",
             f"  scale         x{s.get('scale', 4)}",
             f"  parameters    {params / 1e6:.3f} M" if params else "  parameters    ?",
             f"  MACs/pixel    {macs / 1e3:.1f} k per input pixel" if macs else "  MACs/pixel    ?",
             f"  weights       {s.get('weights_path')} (sha256 {str(s.get('sha256') or '?')[:16]})"]
    if s.get("problem"):
        lines.append(f"  problem       {s['problem']}")
    lines += [f"  {line}" for line in format_metrics(s.get("metrics") or {})]
    if s.get("intended_use"):
        lines.append(f"  intended use  {s['intended_use']}")
    return "\n".join(lines)


def format_metrics(metrics: dict[str, Any]) -> list[str]:
    """Card metrics, one protocol per line, the model next to bicubic (as the viewer's model card
    says them; `--json` gives every number)."""
    from engine.sr.card import quality_rows

    if not metrics:
        return ["metrics       none recorded"]
    return [f"{kind:<13} {name}: {text}" for kind, name, text in quality_rows(metrics)]


# --- eval ---------------------------------------------------------------------------------------

def cmd_eval(args: argparse.Namespace) -> int:
    from engine import evaluation as ev
    from engine.provenance import provenance

    missing = [item for item in args.inputs if not Path(item).exists()]
    for item in missing:
        say(f"{item}: no such file or folder.")
    images = ev.find_images([item for item in args.inputs if item not in missing])
    if args.limit:
        images = images[:args.limit]
    if not images:
        say("No images (PNG, JPEG, TIFF) found in the inputs.")
        return EXIT_FAILED
    methods = ev.baseline_methods() + eval_models(args)
    if args.update_card:
        check_cards_writable(methods)  # before minutes of scoring, not after
    overlap = training_overlap(images, methods, args)
    root = ev.inputs_root(args.inputs)
    devices = sorted({str(m.info["resolved_device"]) for m in methods if m.info.get("resolved_device")})
    report = ev.new_report(f"cxr-enhance {__version__}", args.inputs,
                           provenance=provenance(", ".join(devices) or "cpu"))
    report["settings"] = {"limit": args.limit, "seed": args.seed, "device": args.device,
                          "resolved_device": ", ".join(devices) or None, "precision": args.precision,
                          "tile": args.tile, "overlap": args.overlap,
                          "protocols": args.protocol or list(ev.PROTOCOLS)}
    if overlap:
        report["training_images"] = overlap
    problems: dict[str, str] = {}
    protocols = args.protocol or list(ev.PROTOCOLS)
    # the crop figure shows the first protocol run: x4-native unless --protocol names another
    figure = CropCollector(images, root, args, protocols[0]) if args.crops else None
    for protocol in protocols:
        progress = None if args.quiet else eval_progress(protocol)
        collect = figure.collect if figure is not None and protocol == figure.protocol else None
        result = ev.evaluate(images, protocol, methods, seed=args.seed, root=root,
                             on_image=progress, on_problem=problems.setdefault, on_output=collect)
        print(ev.format_table(result))
        print()
        report["protocols"].append(ev.result_to_json(result))
    report["skipped"] = problems
    for name, sentence in problems.items():
        say(f"skipped: {name} {sentence}")
    if figure is not None:
        written = figure.write(methods)
        say(f"crops written to {written}" if written else "no crops written: no image was evaluated")
    failed = False
    if args.json_out:  # first: the card below may not be writable, the measurement is kept anyway
        try:
            ev.write_report(args.json_out, report)
            say(f"per-image results written to {args.json_out}")
        except OSError as exc:
            say(f"The report could not be written to {args.json_out} ({_os_reason(exc)}); "
                "choose another --json-out.")
            failed = True
    if args.update_card:
        not_written: list[Path] = []
        for card_path in update_cards(report, methods, args, overlap, not_written):
            say(f"metrics written to the model card {card_path}")
        failed = failed or bool(not_written)
    return EXIT_FAILED if problems or missing or failed else EXIT_OK


def _os_reason(exc: OSError) -> str:
    where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
    return where + (exc.strerror or str(exc) or type(exc).__name__)


def check_cards_writable(methods: list[Any]) -> None:
    """--update-card: refuse (exit 2) when a card to update cannot be written, e.g. a read-only
    install or a frozen bundle's models."""
    cards = [m for m in methods if m.kind == "model"]
    if not cards:
        raise UsageError("--update-card needs a model to evaluate; name one with --model.")
    for method in cards:
        card_path = getattr(method, "card_path", None)
        if card_path is None:
            raise UsageError(f"The model {method.name!r} has no card file to update; "
                             "leave out --update-card or evaluate an installed model.")
        _check_card_writable(Path(card_path))


def training_overlap(images: list[Path], methods: list[Any],
                     args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Evaluated images that a model was trained on (matched by file name in its card's
    `training.data.train` folder, when that folder is on this machine): a warning, and
    --update-card refused unless --allow-train-images, so inflated numbers never reach a card."""
    from engine import evaluation as ev
    from engine.sr.card import CardError, ModelCard

    found: dict[str, dict[str, Any]] = {}
    for method in methods:
        card_path = getattr(method, "card_path", None)
        if method.kind != "model" or card_path is None:
            continue
        try:
            folder = ev.training_folder(ModelCard.load(card_path))
        except (CardError, OSError, ValueError):
            continue
        if folder is None:
            continue
        seen = ev.training_images(images, folder)
        if not seen:
            continue
        found[method.name] = {"folder": str(folder), "images": len(seen),
                              "names": sorted(p.name for p in seen)}
        say(f"warning: {len(seen)} of the {len(images)} images evaluated are training images of "
            f"{method.name} (their names are in {folder}); its numbers on them are inflated.")
    if found and args.update_card and not args.allow_train_images:
        names = ", ".join(found)
        raise UsageError(f"--update-card refused: the inputs include training images of {names}; "
                         "evaluate held-out images (the card's training.data.val), or pass "
                         "--allow-train-images to record them anyway.")
    return found


class CropCollector:
    """Keeps a lung crop of every method's output on a few images, for `eval --crops`."""

    def __init__(self, images: list[Path], root: Path | None, args: argparse.Namespace, protocol: str) -> None:
        import numpy as np

        from engine import evaluation as ev

        count = min(args.crop_images, len(images))
        picks = np.linspace(0, len(images) - 1, count).round().astype(int) if count else []
        self.names = [ev.display_name(images[i], root) for i in dict.fromkeys(int(i) for i in picks)]
        self.size = args.crop_size
        self.protocol = protocol
        self.out = Path(args.crops)
        self.cells: dict[str, dict[str, Any]] = {name: {} for name in self.names}

    def collect(self, name: str, method: str, lr: Any, sr: Any, hr: Any) -> None:
        from engine import evaluation as ev

        if name not in self.cells:
            return
        y0, x0, side = ev.lung_box(hr.shape, self.size, ev.SCALE)
        box = (slice(y0, y0 + side), slice(x0, x0 + side))
        cells = self.cells[name]
        cells.setdefault("LR", lr[y0 // ev.SCALE:(y0 + side) // ev.SCALE, x0 // ev.SCALE:(x0 + side) // ev.SCALE])
        cells.setdefault("HR", hr[box])
        cells[method] = sr[box]

    def write(self, methods: list[Any]) -> Path | None:
        from engine import evaluation as ev
        from engine.fileio import atomic_write

        order = [m.name for m in methods]
        rows = []
        for name in self.names:
            cells = self.cells[name]
            if "HR" not in cells:
                continue
            row = [("LR (input)", cells["LR"])]
            for method in order:
                if method in cells:
                    psnr = ev.metrics(cells[method], cells["HR"])["psnr"]
                    row.append((f"{method} {psnr:.2f} dB", cells[method]))
            row.append(("HR (original)", cells["HR"]))
            rows.append((name, row))
        if not rows:
            return None
        title = (f"{self.protocol} lung crops ({self.size}px HR), PSNR of each crop; "
                 f"{', '.join(name for name, _ in rows)}")
        figure = ev.crop_figure(rows, title=title)
        return atomic_write(self.out, lambda handle: figure.save(handle, format="PNG"))


def update_cards(report: dict[str, Any], methods: list[Any], args: argparse.Namespace,
                 overlap: dict[str, dict[str, Any]] | None = None,
                 not_written: list[Path] | None = None) -> list[Path]:
    """Merge each model's means (and the baselines') into its card; other card keys are kept.

    fp32 results go under the protocol's name; another precision under "<protocol>_<precision>".
    `measured_with` is the command that reproduces them (--limit, --seed, --device, --tile, ...
    when they differ from the defaults). A card that cannot be written is said in one sentence
    and added to `not_written`; the others are still updated.
    """
    from engine.evaluation import REGIONS, region_keys
    from engine.sr.card import ModelCard

    card_keys = {"mse", *(key for region in REGIONS for key in region_keys(region))}
    overlap = overlap or {}
    written = []
    for method in methods:
        card_path = getattr(method, "card_path", None)
        if method.kind != "model" or card_path is None:
            continue
        card = ModelCard.load(card_path)
        precision = str(method.info.get("resolved_precision") or args.precision)
        command = " ".join(["cxr-enhance eval", *args.inputs, "--model", card.name,
                            "--precision", precision, *_reproduce_options(args, method),
                            "--update-card"])
        for protocol in report["protocols"]:
            means = {m["method"]: m["mean"] for m in protocol["methods"]}
            if method.name not in means:
                continue

            def pick(mean: dict[str, Any]) -> dict[str, Any]:
                return {k: (round(v, 7 if k == "mse" else 4) if isinstance(v, float) else v)
                        for k, v in mean.items() if k in card_keys and v is not None}

            entry = {"bicubic": pick(means.get("bicubic", {})),
                     "lanczos": pick(means.get("lanczos", {})),
                     "model": pick(means[method.name]),
                     "images": len(protocol["images"]), "measured_with": command}
            if method.name in overlap:  # only with --allow-train-images
                entry["training_images"] = overlap[method.name]["images"]
            key = protocol["protocol"] if precision == "fp32" else f"{protocol['protocol']}_{precision}"
            card.metrics[key] = entry
        card.metrics["interior"] = report["protocols"][0].get("interior", "")
        card.metrics["lungs"] = report["protocols"][0].get("lungs", "")
        try:
            written.append(card.save(card_path))
        except OSError as exc:
            say(f"The model card {card_path} could not be written ({_os_reason(exc)}); the "
                f"numbers are in {args.json_out or 'the table above'}.")
            if not_written is not None:
                not_written.append(Path(card_path))
    return written


def _reproduce_options(args: argparse.Namespace, method: Any) -> list[str]:
    """The options of this run that change the numbers, where they are not the defaults."""
    options: list[str] = []
    if args.protocol:
        for protocol in args.protocol:
            options += ["--protocol", protocol]
    if args.limit:
        options += ["--limit", str(args.limit)]
    if args.seed != 0:
        options += ["--seed", str(args.seed)]
    if args.device != "auto":
        options += ["--device", str(args.device)]
    if args.tile != 256:
        options += ["--tile", str(args.tile)]
    if args.overlap != 16:
        options += ["--overlap", str(args.overlap)]
    if getattr(args, "allow_train_images", False):
        options.append("--allow-train-images")
    return options


def eval_progress(protocol: str) -> Callable[[int, int, str], None]:
    """Every tenth image and the last, on stderr (also `cxr-train eval-chain`'s)."""
    def on_image(index: int, total: int, name: str) -> None:
        if index % 10 == 0 or index == total - 1:
            say(f"{protocol}: image {index + 1}/{total} ({name})")
    return on_image


def eval_models(args: argparse.Namespace) -> list[Any]:
    """--model (may repeat), or every installed model; none installed means baselines only."""
    if args.no_models:
        return []
    from engine import evaluation as ev

    try:
        infos = ev.find_models(args.model or [])
    except (LookupError, ValueError) as exc:
        raise UsageError(_sentence(str(exc))) from None
    if not infos:
        say("No models installed: evaluating the bicubic and Lanczos baselines only.")
    else:
        _use_threads(args)
    return [ev.model_method(info, device=args.device, precision=args.precision,
                            tile=args.tile, overlap=args.overlap) for info in infos]


# --- compare ------------------------------------------------------------------------------------

def _read_report(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist; write one with `cxr-enhance eval --json-out`.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not a readable JSON report ({exc}).") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from engine import evaluation as ev

    before = _read_report(args.before)
    after = _read_report(args.after) if args.after else before
    if args.after is None and not args.methods:
        raise UsageError("with one report, name the two methods to compare: --methods A B.")
    try:
        rows = ev.compare_reports(before, after, [tuple(args.methods)] if args.methods else None,
                                  skip=args.skip)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.after and not args.methods:
        for name in ev.same_weights(before, after):
            say(f"{name}: the same weights in both reports, left out.")
    print(ev.format_comparison(rows))
    if args.json_out:
        report = {"before": args.before, "after": args.after or args.before, "skip": args.skip, "rows": rows}
        ev.write_report(args.json_out, report)
        say(f"comparison written to {args.json_out}")
    return EXIT_OK


# --- bench --------------------------------------------------------------------------------------

def cmd_bench(args: argparse.Namespace) -> int:
    from engine.sr import bench

    if args.out:
        check_output_file(args.out, "--out")  # before the benchmark, not after minutes of it
    card_failed = False
    if args.display:
        report, text = run_display_bench(args.size)
    elif args.memory:
        report = bench.bench_memory(size=args.size or 2048, arch=args.arch or "compact",
                                    device=args.device, precision=args.precision,
                                    tile=args.tile or 256, overlap=args.overlap)
        text = bench.format_memory(report)
    elif args.bf16_fidelity:
        report = bench.bf16_fidelity(args.bf16_fidelity, arch=args.arch or "rrdb23",
                                     crop=args.crop, device=args.device)
        text = bench.format_fidelity(report)
    else:
        if args.update_card:
            _card_of(args.arch or "rrdb23")  # refuse before minutes of benchmarking, not after
        log = None if (args.json and not args.out) or args.quiet else say
        report = bench.bench_speed(arch=args.arch or "rrdb23", size=args.size or 128,
                                   device=args.device, repeats=args.repeats, tile=args.tile,
                                   overlap=args.overlap, matmul_size=args.matmul_size,
                                   isolate=not args.in_process, log=log)
        text = bench.format_speed(report)
        if args.update_card:
            try:
                card_path = speed_to_card(report, args)
                say(f"speed written to the model card {card_path}")
            except OSError as exc:
                say(f"The model card could not be written ({_os_reason(exc)}); the numbers "
                    "follow below.")
                card_failed = True
    try:
        emit_report(report, text, args)
    except _ReportNotWritten:
        return EXIT_FAILED
    return EXIT_FAILED if card_failed else EXIT_OK


def speed_to_card(report: dict[str, Any], args: argparse.Namespace) -> Path:
    """The untiled speed per precision, from `bench --arch MODEL`, into that model's card."""
    from engine.sr.card import ModelCard

    card_path = _card_of(report["arch"])
    card = ModelCard.load(card_path)
    machine = report.get("machine", {})
    size, out = report["size"], report["output_size"]
    untiled = [r for r in report["runs"] if r.get("tile") is None]
    command = f"cxr-enhance bench --arch {report['arch']} --size {size} --update-card"
    card.extra["speed"] = {
        "measured_with": command + (f" (JSON: {args.out})" if args.out else ""),
        "device": machine.get("device"), "cpu": machine.get("cpu"), "cpus": machine.get("cpus"),
        "threads": machine.get("threads"), "torch": machine.get("torch"),
        f"input_{size}_output_{out}_s": {r["resolved_precision"]: round(r["seconds_median"], 3)
                                         for r in untiled},
        "output_megapixels_per_s": {r["resolved_precision"]: round(r["output_mpix_per_s"], 2)
                                    for r in untiled},
        "macs_per_input_pixel": report.get("macs_per_input_pixel"),
        "load_average_start": report.get("load_average_start"),
    }
    return card.save(card_path)


def _card_of(arch: str) -> Path:
    from engine.sr import registry

    try:
        info = registry.find_model(arch)
    except (LookupError, ValueError):
        raise UsageError(f"--update-card needs --arch to name an installed model, not {arch!r}.") from None
    if info.card_path is None:
        raise UsageError(f"The model {arch!r} has no card file to update.")
    _check_card_writable(Path(info.card_path))
    return info.card_path


def _check_card_writable(path: Path) -> None:
    """Refuse (exit 2) a card that cannot be written: a read-only install, a frozen bundle."""
    import os

    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"The model card {path} cannot be written here (read-only); leave out "
                         "--update-card, or copy the model to a folder you can write.")


def run_display_bench(size: int | None = None) -> tuple[dict[str, Any], str]:
    try:
        from engine.display.bench import bench_render
    except ImportError:
        raise UsageError("This build has no display benchmark (engine.display.bench).") from None
    result = bench_render(**({"size": size} if size else {}))
    report = result if isinstance(result, dict) else {"result": result}
    from engine.provenance import provenance

    report = {"kind": "display", **report, "provenance": provenance()}
    return report, json.dumps(report, indent=2, default=str)


def check_output_file(path: str, option: str) -> Path:
    """A file that can be written: its folder exists and it is not itself a folder (exit 2)."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name, e.g. {out / 'bench.json'}.")
    parent = out.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {parent} does not exist; create it or "
                         "choose another file.")
    return out


def emit_report(report: dict[str, Any], text: str, args: argparse.Namespace) -> None:
    from engine.fileio import atomic_write

    data = json.dumps(report, indent=2, default=str)
    if args.out:
        try:
            atomic_write(args.out, (data + "\n").encode("utf-8"))
            say(f"written to {args.out}")
        except OSError as exc:  # the measurement is not lost: the JSON goes to stdout instead
            say(f"The report could not be written to {args.out} ({_os_reason(exc)}); "
                "it follows here as JSON.")
            print(data)
            raise _ReportNotWritten from None
    if args.json and not args.out:
        print(data)
    else:
        print(text)


class _ReportNotWritten(Exception):
    """bench --out failed after the benchmark; the JSON was printed instead (exit 1)."""


# --- parser -------------------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _add_runtime_options(p: argparse.ArgumentParser, precision_default: str = "auto") -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--precision", default=precision_default, choices=("auto", "fp32", "fp16", "bf16"),
                   help=f"arithmetic precision (default {precision_default})")
    p.add_argument("--tile", type=_positive_int, default=256,
                   help="tile size in input pixels (default 256)")
    p.add_argument("--overlap", type=_non_negative_int, default=16,
                   help="tile overlap in input pixels (default 16)")
    p.add_argument("--threads", type=_non_negative_int, default=0,
                   help="CPU threads for the model (default 0: one per core)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-enhance",
        description="4x super-resolution of chest X-rays (research and education use only).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _enhance_parser(sub)
    _models_parser(sub)
    _eval_parser(sub)
    _compare_parser(sub)
    _bench_parser(sub)
    return parser


def _enhance_parser(sub: Any) -> None:
    p = sub.add_parser("enhance", help="enhance image files or folders x4",
                       description="Enhance PNG (8/16-bit), TIFF, JPEG and DICOM files or folders. "
                                   "Results are named <stem>_x4.<ext> under -o; inputs are never "
                                   "overwritten.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders (recursive)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="folder for the results")
    p.add_argument("--model", help="model name or weights path (default: the default model)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="dicom (DICOM inputs only), png, png16 or tiff; default: dicom for DICOM, "
                        "png16 for 16-bit images, png otherwise")
    p.add_argument("--anonymise", "--anonymize", action="store_true",
                   help="remove patient identity from derived DICOM files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, only failures")
    _add_runtime_options(p)
    p.set_defaults(func=cmd_enhance)


def _models_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="list installed models and their cards")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)


def _eval_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM/MSE against bicubic and Lanczos",
                       description="Quality per ../shared/docs/QUALITY_PROTOCOLS.md on a folder of images.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--protocol", action="append", choices=("x4-native", "seed-128to512"),
                   help="may repeat (default: both)")
    p.add_argument("--model", action="append", help="model name or path; may repeat "
                                                    "(default: every installed model)")
    p.add_argument("--no-models", action="store_true", help="baselines only")
    p.add_argument("--limit", type=_positive_int, help="first N images only")
    p.add_argument("--seed", type=int, default=0, help="noise seed of seed-128to512 (default 0)")
    p.add_argument("--json-out", metavar="FILE", help="write per-image results as JSON")
    p.add_argument("--crops", metavar="PNG",
                   help="also write a figure of lung crops under the first protocol evaluated (x4-native unless "
                        "--protocol names another): LR | bicubic | each model | HR")
    p.add_argument("--crop-images", type=_positive_int, default=4,
                   help="images in the --crops figure, spread over the sorted list (default 4)")
    p.add_argument("--crop-size", type=_positive_int, default=128,
                   help="HR pixels per side of each crop (default 128)")
    p.add_argument("--update-card", action="store_true",
                   help="write the measured means into each evaluated model's card (metrics, "
                        "per protocol: model, bicubic and Lanczos, whole image, interior and lung fields)")
    p.add_argument("--allow-train-images", action="store_true",
                   help="let --update-card record numbers although some inputs are training images "
                        "of the model (found by name in its card's training.data.train folder)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    _add_runtime_options(p, precision_default="fp32")
    p.set_defaults(func=cmd_eval)


def _compare_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help="image-by-image differences between two eval reports",
                       description="Before replacing a model: how many images the new weights "
                                   "improve, by how much, and the worst one. BEFORE and AFTER are "
                                   "`eval --json-out` reports; with one report, --methods A B "
                                   "compares two of its methods (B - A).")
    p.add_argument("before", metavar="BEFORE", help="eval report (JSON) of the old weights")
    p.add_argument("after", metavar="AFTER", nargs="?", help="eval report (JSON) of the new weights")
    p.add_argument("--methods", nargs=2, metavar=("A", "B"),
                   help="compare method A (in BEFORE) with method B (in AFTER, or in BEFORE "
                        "when there is one report), e.g. cxr-fast-x4 cxr-fidelity-x4")
    p.add_argument("--skip", type=int, default=0, metavar="N",
                   help="leave out the first N images by name, e.g. the 8 validation images a "
                        "training run chose its step on (data.val_crops), to compare on the rest")
    p.add_argument("--json-out", metavar="FILE", help="write the comparison as JSON")
    p.set_defaults(func=cmd_compare)


def _bench_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="speed and memory of Enhance",
                       description="Speed (fp32 vs bf16/fp16, tiled vs untiled, next to matmul "
                                   "GFLOP/s), --memory, --bf16-fidelity or --display.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--memory", action="store_true",
                      help="peak memory of one large Enhance (default 2048^2 in, compact net)")
    mode.add_argument("--bf16-fidelity", metavar="IMAGE",
                      help="PSNR of the bf16 (fp16 on CUDA) output against fp32 on a crop of IMAGE")
    mode.add_argument("--display", action="store_true", help="windowing speed of the display")
    p.add_argument("--arch", help="rrdb23 or compact (random weights) or an installed model name "
                                  "(default rrdb23; compact for --memory)")
    p.add_argument("--size", type=_positive_int,
                   help="input size in pixels (default 128; 2048 for --memory)")
    p.add_argument("--crop", type=_positive_int, default=256, help="--bf16-fidelity crop size")
    p.add_argument("--repeats", type=_positive_int, default=3, help="timed runs per configuration")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="precision for --memory (the speed table runs both)")
    p.add_argument("--tile", type=_positive_int,
                   help="tile size of the tiled runs (default size/2; 256 for --memory)")
    p.add_argument("--overlap", type=_non_negative_int, default=16, help="tile overlap")
    p.add_argument("--matmul-size", type=_positive_int, default=2048,
                   help="n of the n x n fp32 matmul reference (default 2048)")
    p.add_argument("--in-process", action="store_true",
                   help="run the speed configurations in this process (quicker; peak memory "
                        "then mixes configurations)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--out", metavar="FILE", help="write the JSON to FILE")
    p.add_argument("--update-card", action="store_true",
                   help="write the speed table into the card of the model named by --arch")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_bench)


def main(argv: Sequence[str] | None = None) -> int:
    from engine.io import quiet_nonconformance_warnings

    quiet_nonconformance_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        say(f"cxr-enhance {args.command}: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("Interrupted.")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
