"""Command line: ``python -m mn_core {colorize,sequence,points,evaluate,parity,download} ...`` (see ``--help`` of each)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .choices import FINISH_GAP as DEFAULT_GAP
from .choices import FIT_MODES, MULTI_REFERENCE_MODES, POLARITIES, PRECISIONS
from .choices import PRIOR_STRENGTH as DEFAULT_PRIOR_STRENGTH

EXAMPLES = """\
examples:
  python -m mn_core colorize --models checkpoints --download --reference ref.png --lineart page.png --out out.png
  python -m mn_core colorize --models checkpoints --reference ref.png --lineart frame.jpg --extract \\
      --points points.json --steps 30 --seed 7 --out coloured.png
  python -m mn_core colorize --models checkpoints --reference a.png --reference b.png --multi-reference bank \
      --lineart page.png --out out.png
  python -m mn_core colorize --models checkpoints --reference ref.png --lineart page_6000px.png --full-resolution \\
      --flat --keep-shading page_grey.png --layers page.psd --out page_coloured.png
  python -m mn_core sequence --models checkpoints --reference key.png --frames shot.mp4 --previous-frame \
      --out coloured_frames/
  python -m mn_core points --reference ref.png --lineart page.png --max-pairs 12 --out points.json
  python -m mn_core colorize --models checkpoints --reference ref.png --lineart page.png --auto-points 12 \
      --out out.png
  python -m mn_core evaluate --pred coloured/ --target truth/ --metrics psnr,ssim,lpips --out eval/report.json
  python -m mn_core evaluate --benchmark --models checkpoints --pairs pairs/ --steps 30 --out bench/report.json
  python -m mn_core parity ../shared/manganinja/fixtures/cases/extract_points
"""

POINTS_HELP = """JSON file of matched points, in pixels of the original images:
{"pairs": [{"reference": [x, y], "lineart": [x, y]}, ...]} (at most 24 pairs; optional "reference_size" /
"lineart_size": [w, h] are checked against the images). The ComfyUI Point Editor writes the same format."""


MULTI_HELP = """how several references are combined: tile lays them out in one processing square (the input the
model was trained on, fewer pixels each; default), bank encodes each at full size side by side in the attention
bank (CLIP context: their mean). With one reference both are the same."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


EVALUATE_EPILOG = """metrics: psnr ssim ms_ssim lpips fid clip dino point_mse temporal (definitions: mn_core/metrics.py).
lpips, fid, clip and dino download their network on first use into --nets (see mn_core/metric_nets.py)."""


FINISH_HELP = """MangaNinja colours at the processing size; with these options the result is recomposed at the line
art's own size: the colour placed region by region (no colour across lines), the original line pixels kept
exactly. Give the line art as drawn (with --extract the annotator's line art, brought up to the page size, is
used)."""


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _pairs(text: str) -> int:
    value = _whole(text)
    if not 1 <= value <= 24:
        raise argparse.ArgumentTypeError(f"expected 1 to 24 pairs (MangaNinja's maximum is 24), got {value}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _size(text: str) -> int:
    value = _positive_int(text)
    if value % 64:
        raise argparse.ArgumentTypeError(f"must be a multiple of 64, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _finite_between(lo: float, hi: float):
    """An argparse type: a finite number from ``lo`` to ``hi``."""

    def parse(text: str) -> float:
        value = _finite(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo:g} and {hi:g}, got {text!r}")
        return value

    return parse


_unit_interval = _finite_between(0.0, 1.0)
_guidance = _finite_between(0.0, 30.0)  # the sampler node's range


def _seed(text: str) -> int:
    value = _whole(text)
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"must be from 0 to 2**64 - 1, got {value}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def _add_run_options(p: argparse.ArgumentParser, models_required: bool = True) -> None:
    """The options ``colorize``, ``sequence`` and ``evaluate --benchmark`` share: the models, the sampler and where
    it runs."""
    p.add_argument("--models", required=models_required, type=Path, metavar="DIR",
                   help="checkpoint folder in the official layout (StableDiffusion/, models/, MangaNinjia/)")
    p.add_argument("--download", action="store_true",
                   help="download missing model files from Hugging Face into DIR first (honours HF_ENDPOINT)")
    p.add_argument("--steps", type=_positive_int, default=50, help="DDIM steps (default 50)")
    p.add_argument("--guidance-ref", type=_guidance, default=9.0,
                   help="reference guidance scale (default 9; values <= 1 are allowed)")
    p.add_argument("--guidance-point", type=_guidance, default=15.0, help="point guidance scale (default 15)")
    p.add_argument("--fit", choices=FIT_MODES, default="letterbox",
                   help="letterbox keeps the aspect ratio (default); stretch resizes to a square like upstream")
    p.add_argument("--size", type=_size, default=512, help="processing size, a multiple of 64 (default 512)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: fp16 on GPUs, fp32 on CPU")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--low-memory", action="store_true",
                   help="run the guidance rows one at a time: less activation memory, same output, slower")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mn_core", description="MangaNinja reference-based line-art "
                                     "colorization (independent implementation of the official inference).",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log loading and download details")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{colorize,sequence,points,evaluate,parity,download}")

    c = sub.add_parser("colorize", help="colour a line art from a reference image",
                       description="Colour a line art with the colours of a reference image.")
    c.add_argument("--reference", required=True, type=Path, action="append", metavar="REF",
                   help="coloured reference image; repeat for several references (see --multi-reference)")
    c.add_argument("--multi-reference", choices=MULTI_REFERENCE_MODES, default="tile", help=MULTI_HELP)
    c.add_argument("--lineart", required=True, type=Path, metavar="IMG",
                   help="line art (white on black or black on white), or with --extract any colour/grey image")
    c.add_argument("--extract", action="store_true",
                   help="extract the line art from IMG with the sk_model annotator instead of using it as drawn")
    c.add_argument("--polarity", choices=POLARITIES, default="auto",
                   help="how the given line art is drawn (default: auto-detect from the background)")
    c.add_argument("--points", type=Path, metavar="FILE.json", help=POINTS_HELP)
    c.add_argument("--auto-points", type=_pairs, metavar="N",
                   help="suggest up to N matched pairs (1 to 24) between the (first) reference and the line art "
                        "instead of --points (no model weights; see the points command)")
    c.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    _add_run_options(c)
    c.add_argument("--out", required=True, type=Path, metavar="OUT.png", help="where to write the coloured image")
    c.add_argument("--lineart-out", type=Path, metavar="PATH", help="also write the line art that was used")
    f = c.add_argument_group("finishing at full resolution", FINISH_HELP)
    f.add_argument("--full-resolution", action="store_true",
                   help="recompose the colour at the line art's own size with its original lines on top (the "
                        "options below imply it)")
    f.add_argument("--flat", action="store_true", help="flat colours: one colour per closed region of the line art")
    f.add_argument("--close-gaps", type=_non_negative_int, default=DEFAULT_GAP, metavar="PX",
                   help=f"gaps in the lines up to PX pixels of the page are closed for the regions (default "
                        f"{DEFAULT_GAP}; 0: none)")
    f.add_argument("--keep-shading", type=Path, metavar="PAGE.png",
                   help="a grey page (screentones, shading) of the line art's size: its L* is kept, the colour "
                        "gives a*b* (CIELAB)")
    f.add_argument("--prior", type=Path, metavar="PRIOR.png",
                   help="a rough colour image (any size): blended into the colour's a*b* (CIELAB)")
    f.add_argument("--prior-strength", type=_unit_interval, default=DEFAULT_PRIOR_STRENGTH, metavar="L",
                   help=f"weight of the prior's a*b*, 0..1 (default {DEFAULT_PRIOR_STRENGTH}, inkn'hue's value)")
    f.add_argument("--layers", type=Path, metavar="OUT.psd",
                   help="also write a layered PSD (lines multiply over colour, shading, the original page "
                        "hidden); needs psd-tools")
    f.add_argument("--png-layers", type=Path, metavar="DIR",
                   help="also write the layers as PNG files (lines as black with alpha) into DIR")

    q = sub.add_parser("sequence", help="colour the frames of a folder or video with one (or more) references",
                       description="Colour an ordered list of frames (image files sorted by name, or the frames "
                                   "of a video) with the colours of the reference(s); each frame is written to "
                                   "OUT_DIR as soon as it is done.")
    q.add_argument("--reference", required=True, type=Path, action="append", metavar="REF",
                   help="coloured reference (keyframe) image; repeat for several references")
    q.add_argument("--multi-reference", choices=MULTI_REFERENCE_MODES, default="tile", help=MULTI_HELP)
    q.add_argument("--frames", required=True, type=Path, metavar="DIR_OR_VIDEO",
                   help="a folder of line-art frames (image files, in name order) or a video file (needs PyAV)")
    q.add_argument("--out", required=True, type=Path, metavar="OUT_DIR",
                   help="folder for the coloured frames: <frame name>.png (video: frame_00000.png, ...)")
    q.add_argument("--previous-frame", action="store_true",
                   help="colour each frame with the reference(s) and the coloured frame before it (steadier "
                        "colours along a shot; frames are then coloured one at a time)")
    q.add_argument("--same-noise", action="store_true",
                   help="give every frame the initial noise of frame 0 (less flicker on still parts)")
    q.add_argument("--batch", type=_positive_int, default=1,
                   help="frames sampled together in one network call per step (default 1; not with "
                        "--previous-frame)")
    q.add_argument("--polarity", choices=POLARITIES, default="auto",
                   help="how the frames are drawn (default: auto-detect from the background, per frame)")
    q.add_argument("--points", type=Path, metavar="FILE.json",
                   help=POINTS_HELP + " The same points are used for every frame.")
    q.add_argument("--seed", type=_seed, default=0,
                   help="random seed (default 0); each frame's noise comes from (seed, frame number)")
    q.add_argument("--restart", action="store_true",
                   help="OUT_DIR holds a run with other settings: delete its frames and colour again from the start "
                        "(without it such a folder is refused; the same settings resume)")
    q.add_argument("--chunk", type=_non_negative_int, default=0, metavar="N",
                   help="with --previous-frame: cut the shot into chunks of N frames, each restarting from the "
                        "keyframe --overlap frames early (chunks can run on different workers); 0: one chain "
                        "(default; with --ray: 16)")
    q.add_argument("--overlap", type=_non_negative_int, default=2, metavar="K",
                   help="frames coloured before each chunk to warm its chain up, not written (default 2)")
    q.add_argument("--ray", metavar="local|ADDRESS",
                   help="spread the frames over Ray actors (each loads the models once): 'local' starts a Ray "
                        "instance on this machine, an address (ray://host:10001 or host:6379) joins a cluster; "
                        "needs the extra [cluster] (pip install ray)")
    q.add_argument("--ray-workers", type=_positive_int, default=None, metavar="N",
                   help="number of Ray actors (default: one per GPU of the cluster, else 2)")
    _add_run_options(q)

    m = sub.add_parser("points", help="suggest matched points between a reference and a line art (no weights)",
                       description="Suggest matched point pairs (line structure, SIFT matches, geometric checks; "
                                   "mn_core/suggest.py) and write them as the points JSON, best first, each with "
                                   "a confidence. No model weights are needed.")
    m.add_argument("--reference", required=True, type=Path, metavar="REF", help="the coloured reference")
    m.add_argument("--lineart", required=True, type=Path, metavar="IMG",
                   help="the line art, or with --extract a colour image")
    m.add_argument("--extract", action="store_true",
                   help="IMG is a colour image: its own outlines are matched (as colorize --extract colours it)")
    m.add_argument("--polarity", choices=POLARITIES, default="auto", help="how the line art is drawn")
    m.add_argument("--max-pairs", type=_pairs, default=12, metavar="N", help="at most N pairs, 1 to 24 (default 12)")
    m.add_argument("--min-confidence", type=_unit_interval, default=0.0, metavar="C",
                   help="leave out pairs below this confidence, 0..1 (the best pair has 1; default 0)")
    m.add_argument("--palette", type=Path, metavar="FILE.json",
                   help="also write the reference's 12 main colours, each with reference points (palette hints)")
    m.add_argument("--out", required=True, type=Path, metavar="points.json",
                   help="where to write the pairs (the points JSON that --points and the Point Editor read)")

    e = sub.add_parser("evaluate", help="score coloured images against targets (PSNR, SSIM, LPIPS, FID, ...)",
                       description="Score predictions against targets paired by file name, print a table and "
                                   "write report.json, report.csv and report.html. With --benchmark, first colour "
                                   "the targets' extracted line art from their references (the papers' protocol).",
                       epilog=EVALUATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--pred", type=Path, metavar="DIR", help="coloured images (not with --benchmark)")
    e.add_argument("--target", type=Path, metavar="DIR", help="ground-truth colour images, same names as --pred")
    e.add_argument("--reference", type=Path, metavar="DIR",
                   help="references, same names: shown in the contact sheet; clip/dino also scored against them")
    e.add_argument("--points", type=Path, metavar="DIR",
                   help="point pairs as <name>.json (the points format) for point_mse")
    e.add_argument("--metrics", default=None, metavar="LIST",
                   help="comma-separated, or 'all' (default psnr,ssim,ms_ssim; point_mse is added with --points, "
                        "temporal with --sequence)")
    e.add_argument("--sequence", action="store_true",
                   help="the images are frames of one shot in name order: adds the temporal metric")
    e.add_argument("--resize", action="store_true",
                   help="resize each prediction to its target's size (bicubic) instead of refusing a size mismatch")
    e.add_argument("--out", required=True, type=Path, metavar="REPORT.json",
                   help="report file; report.csv, report.html and report_files/ are written beside it")
    e.add_argument("--no-html", action="store_true", help="write only the JSON and CSV reports")
    e.add_argument("--nets", type=Path, metavar="DIR",
                   help="folder of the metric networks (default $MN_METRICS_HOME or ~/.cache/manganinja/metrics)")
    e.add_argument("--no-net-download", action="store_true",
                   help="never download a metric network (a missing one is an error)")
    e.add_argument("--workers", type=_positive_int, default=None, help="loader threads (default: CPU count, max 8)")
    e.add_argument("--benchmark", action="store_true",
                   help="colour the pairs of --pairs with --models first, then score them")
    e.add_argument("--pairs", type=Path, metavar="DIR",
                   help="with --benchmark: DIR/reference/<name>.*, DIR/target/<name>.*, optional DIR/points/")
    e.add_argument("--seed", type=_seed, default=0, help="with --benchmark: random seed for every pair (default 0)")
    _add_run_options(e, models_required=False)

    p = sub.add_parser("parity", help="run a fixture case of the official code and compare every array",
                       description="Run one parity fixture case (or every case under a fixtures folder) and "
                                   "compare with the official outputs. Exit code 0 only if everything passes.")
    p.add_argument("case", type=Path, metavar="CASE_DIR", help="a case folder (with case.json), or a fixtures folder")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda (TF32 is switched off)")

    d = sub.add_parser("download", help="download the missing files of the official layout",
                       description="Download the files of the official layout that DIR lacks.")
    d.add_argument("--models", required=True, type=Path, metavar="DIR",
                   help="checkpoint folder to complete (created if needed); honours HF_ENDPOINT and HF_TOKEN")
    d.add_argument("--verify", action="store_true",
                   help="then read every file present and check it against the hub's size and checksum (those "
                        "recorded when it was downloaded, else asked from the hub); exit code 1 if one differs")
    return parser


def _open_image(path: Path, what: str):
    from .images import ImageError, open_image

    if not path.is_file():
        raise CliError(f"{what} {path}: file not found")
    try:
        return open_image(path, what=f"{what} {path}")
    except ImageError as e:
        raise CliError(str(e)) from None


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, file=sys.stderr)


def _read_points(path: Path | None):
    from .points import NO_POINTS, parse

    if path is None:
        return NO_POINTS
    if not path.is_file():
        raise CliError(f"--points {path}: file not found")
    return parse(path.read_text(encoding="utf-8"))


def _load(args):
    from .pipeline import MangaNinja

    def download_progress(role, done, total):
        if done == total:
            print(f"downloaded {role} ({done / 1e6:.1f} MB)", file=sys.stderr)

    return MangaNinja.from_folder(args.models, device=args.device, precision=args.precision,
                                  download=args.download, progress=download_progress,
                                  sequential_rows=args.low_memory)


def cmd_colorize(args) -> int:
    from .lineart import from_drawing
    from .observers import Progress

    references = [_open_image(path, "--reference") for path in args.reference]
    drawing = _open_image(args.lineart, "--lineart")
    if args.points is not None and args.auto_points is not None:
        raise CliError("give --points FILE or --auto-points N, not both")
    points = _read_points(args.points)
    if args.out.suffix.lower() not in IMAGE_SUFFIXES:
        raise CliError(f"--out {args.out}: use an image extension such as .png")
    if args.auto_points is not None:
        from .suggest import suggest_points

        points = suggest_points(references[0], drawing, args.auto_points, polarity=args.polarity,
                                extract=args.extract)
        print(f"suggested {len(points)} pair{'s' if len(points) != 1 else ''} (asked for up to {args.auto_points})",
              file=sys.stderr)
    finishing = _finishing_inputs(args, drawing)  # checked before the models run: nothing is lost to a typo

    mn = _load(args)
    import torch

    generator = torch.Generator("cpu").manual_seed(args.seed)  # draw 1: reference noise, draw 2: initial latents
    if len(references) == 1:
        ref = mn.encode_reference(references[0], size=args.size, fit=args.fit, generator=generator, seed=args.seed)
    else:
        ref = mn.encode_references(references, mode=args.multi_reference, size=args.size, fit=args.fit,
                                   generator=generator, seed=args.seed)
    if args.extract:
        lineart = mn.extract_lineart(drawing, size=args.size, fit=args.fit)
    else:
        lineart = from_drawing(drawing, size=args.size, fit=args.fit, polarity=args.polarity)
    bar = []

    def on_step(i, n):
        if not bar:
            bar.append(_progress(n, "colorize"))
        bar[0].update(1)

    try:
        result = mn.colorize(ref, lineart, points=points, steps=args.steps, guidance_ref=args.guidance_ref,
                             guidance_point=args.guidance_point, generator=generator, seed=args.seed,
                             observers=[Progress(on_step)])
    finally:
        if bar:
            bar[0].close()
    image = result.image
    finished = None
    if finishing is not None:
        finished = _finish(args, result, lineart, drawing, finishing)
        image = finished.image
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    if args.lineart_out:
        args.lineart_out.parent.mkdir(parents=True, exist_ok=True)
        result.lineart.save(args.lineart_out)
    print(f"wrote {args.out} ({image.width}x{image.height}, seed {result.seed})")
    if finished is not None:
        _write_layers(args, finished)
    return 0


def _finishing_inputs(args, drawing) -> dict | None:
    """The finishing options, checked: None when the result is not finished at full resolution."""
    wanted = (args.full_resolution or args.flat or args.keep_shading or args.prior or args.layers
              or args.png_layers)
    if not wanted:
        return None
    page = prior = None
    if args.keep_shading:
        page = _open_image(args.keep_shading, "--keep-shading")
        if page.size != drawing.size:
            raise CliError(f"--keep-shading {args.keep_shading}: the page is {page.width}x{page.height} but --lineart "
                           f"is {drawing.width}x{drawing.height}; give the grey page the line art belongs to, at "
                           f"the same size")
    if args.prior:
        prior = _open_image(args.prior, "--prior")
    if args.layers:
        if args.layers.suffix.lower() != ".psd":
            raise CliError(f"--layers {args.layers}: use the extension .psd")
        from .layers import _psd_tools

        try:
            _psd_tools()
        except ImportError as e:
            raise CliError(f"--layers: {e}") from None
    return {"page": page, "prior": prior}


def _finish(args, result, lineart, drawing, finishing):
    from .finish import finish_page

    left, top, cw, ch = lineart.fit.box
    colour = result.processed_image.crop((left, top, left + cw, top + ch))  # the model's own pixels
    if args.extract:  # the annotator's line art, white on black, brought up to the page size
        page_lines, polarity = result.lineart, "white_on_black"
    else:
        page_lines, polarity = drawing, args.polarity
    return finish_page(colour, page_lines, polarity=polarity, flat=args.flat, close_gaps=args.close_gaps,
                       keep_shading=finishing["page"], prior=finishing["prior"], prior_strength=args.prior_strength)


def _write_layers(args, finished) -> None:
    from .layers import write_png_layers, write_psd

    if args.layers:
        write_psd(finished, args.layers)
        print(f"wrote {args.layers} ({len(finished.layers())} layers)")
    if args.png_layers:
        paths = write_png_layers(finished, args.png_layers, args.out.stem)
        print(f"wrote {len(paths)} PNG layers into {args.png_layers}")


def sequence_settings(args, source, points) -> dict:
    """What makes a run's output what it is: the inputs, references, models and options (runner.Run hashes it)."""
    from .runner import digest_file, models_identity

    chunked = args.previous_frame and args.chunk
    return {"frames": source.identity, "references": [digest_file(p) for p in args.reference],
            "models": models_identity(args.models), "points": points.to_json() if points.pairs else None,
            "steps": args.steps, "guidance_ref": args.guidance_ref, "guidance_point": args.guidance_point,
            "fit": args.fit, "size": args.size, "precision": args.precision, "device": args.device,
            "seed": args.seed, "same_noise": args.same_noise, "previous_frame": args.previous_frame,
            "batch": args.batch, "polarity": args.polarity, "multi_reference": args.multi_reference,
            "chunk": args.chunk if chunked else 0, "overlap": args.overlap if chunked else 0}


class _StopAfterFrame:
    """Ctrl-C: finish the frame being coloured, write it, stop (a second Ctrl-C stops at once)."""

    def __init__(self):
        import signal

        self.requested = False
        self._signal = signal
        self._previous = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after the current frame (Ctrl-C again to stop now)", file=sys.stderr)

    def close(self):
        self._signal.signal(self._signal.SIGINT, self._previous)


def cmd_sequence(args) -> int:
    from tqdm.auto import tqdm

    from .runner import ResumeError, Run, colour_unit, plan
    from .shot_io import FramesError, open_frames, write_outputs

    if args.batch > 1 and args.previous_frame:
        raise CliError(f"--batch {args.batch} with --previous-frame: each frame needs the coloured one before it, "
                       "use --batch 1")
    if args.ray and args.previous_frame and not args.chunk:
        args.chunk = 16  # chunks are what several workers can share
    references = [_open_image(path, "--reference") for path in args.reference]
    points = _read_points(args.points)
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out}: exists and is not a folder")
    if args.ray:
        from .cluster import check_reachable, ray_available

        ray_available()  # one clear line before anything starts
        check_reachable(args.ray)
    try:
        source = open_frames(args.frames)
        run = Run.open(args.out, sequence_settings(args, source, points), source.names, restart=args.restart)
    except (FramesError, ResumeError) as e:
        raise CliError(str(e)) from None
    units = plan(run, previous_frame=args.previous_frame, batch=args.batch, chunk=args.chunk, overlap=args.overlap)
    total, before = len(source), len(run.finished)
    if before:
        print(f"resuming: {before} of {total} frames already finished in {args.out}", file=sys.stderr)
    options = dict(points=points, steps=args.steps, guidance_ref=args.guidance_ref,
                   guidance_point=args.guidance_point, seed=args.seed, same_noise=args.same_noise,
                   polarity=args.polarity)
    stop = _StopAfterFrame()
    try:
        with tqdm(total=total, initial=before, desc="sequence", unit="frame", file=sys.stderr) as bar:
            if args.ray and units:
                from .cluster import run_on_ray

                run_on_ray(args.ray, args, run, units, source, options, workers=args.ray_workers,
                           on_frame=lambda index: bar.update(1), stop=lambda: stop.requested)
            elif units:
                mn = _load(args)
                ref = mn.encode_references(references, mode=args.multi_reference, size=args.size, fit=args.fit,
                                           seed=args.seed)
                for unit in units:
                    previous = run.read(unit.previous_index) if unit.previous_index is not None else None
                    for index, data in colour_unit(mn, ref, unit, source.image, previous, options):
                        run.record(index, data)
                        bar.update(1)
                        if stop.requested:
                            break
                    if stop.requested:
                        break
    finally:
        stop.close()
    if stop.requested and run.missing():
        print(f"stopped: {len(run.finished)} of {total} frames finished in {args.out}; run the same command "
              f"again to resume", file=sys.stderr)
        return 130
    if run.missing():  # a cluster run that lost every worker
        raise CliError(f"{len(run.missing())} frames could not be coloured; run the same command again to resume")
    written = write_outputs(args.out, source.names, source.fps)
    print(f"wrote {total - before} frame{'s' if total - before != 1 else ''} to {args.out} (seed {args.seed}; "
          f"{total} in all), and {', '.join(p.name for p in written)}")
    return 0


def cmd_points(args) -> int:
    import json

    from .suggest import suggest_points

    reference = _open_image(args.reference, "--reference")
    lineart = _open_image(args.lineart, "--lineart")
    if args.out.suffix.lower() != ".json":
        raise CliError(f"--out {args.out}: the points are written as JSON: use a .json file name")
    points = suggest_points(reference, lineart, args.max_pairs, polarity=args.polarity, extract=args.extract,
                            min_confidence=args.min_confidence)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json.loads(points.to_json()), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(points)} pair{'s' if len(points) != 1 else ''} to {args.out}")
    if args.palette is not None:
        from .palette import palette

        swatches = [s.to_json() for s in palette(reference)]
        args.palette.parent.mkdir(parents=True, exist_ok=True)
        args.palette.write_text(json.dumps({"reference_size": list(reference.size), "palette": swatches},
                                           indent=1) + "\n", encoding="utf-8")
        print(f"wrote {len(swatches)} colours to {args.palette}")
    return 0


def cmd_evaluate(args) -> int:
    from . import evaluate as E
    from . import metrics as M

    names = list(M.parse_names(args.metrics))
    if args.points is not None and "point_mse" not in names:
        names.append("point_mse")
    if args.sequence and "temporal" not in names:
        names.append("temporal")
    names = [n for n in M.NAMES if n in names]
    info = {}
    if args.benchmark:
        if args.models is None or args.pairs is None:
            raise CliError("--benchmark needs --models DIR and --pairs DIR")
        if args.pred is not None or args.target is not None:
            raise CliError("--benchmark makes the predictions itself: leave out --pred/--target (use --pairs)")
        options = {"size": args.size, "fit": args.fit, "steps": args.steps, "guidance_ref": args.guidance_ref,
                   "guidance_point": args.guidance_point, "seed": args.seed}
        mn = _load(args)
        bar = _progress(len(E.benchmark_items(args.pairs)) * args.steps, "benchmark")
        try:
            items = E.run_benchmark(mn, args.pairs, args.out.parent, options, progress=lambda i, n: bar.update(1))
        finally:
            bar.close()
        if any(i.points is not None for i in items) and "point_mse" not in names:
            names = [n for n in M.NAMES if n in names + ["point_mse"]]
        info = {"benchmark": str(args.pairs), "models": str(args.models), **options}
    else:
        if args.pred is None or args.target is None:
            raise CliError("give --pred DIR and --target DIR (or --benchmark with --models and --pairs)")
        items = E.pair_folders(args.pred, args.target, args.reference, args.points)
        info = {"pred": str(args.pred), "target": str(args.target)}
    from .placement import resolve_device

    clip_also = (args.models,) if args.models is not None else ()
    nets = M.Networks(args.nets, device=resolve_device(args.device), download=not args.no_net_download,
                      clip_also=clip_also) if any(n in M.NETWORKS for n in names) else None
    report = E.evaluate_items(items, names, nets=nets, resize=args.resize, sequence=args.sequence,
                              workers=args.workers, progress=E._console_progress())
    report.info.update(info)
    label = "MangaNinja" if args.benchmark else "mean"
    print(E.table(report, label=label))
    for path in E.write_reports(report, args.out, items, html=not args.no_html):
        print(f"wrote {path}")
    return 0


def cmd_parity(args) -> int:
    from .parity import find_cases, run_case

    cases = find_cases(args.case)
    if not cases:
        raise CliError(f"{args.case}: no case.json here (expected a case folder or a fixtures folder with cases/)")
    ok = True
    for case in cases:
        report = run_case(case, device=args.device)
        print("\n".join(report.lines()))
        ok = ok and report.passed
    if len(cases) > 1:
        print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def cmd_download(args) -> int:
    from .models import ensure_models

    def progress(role, done, total):
        if done == total:
            print(f"{role}: {done / 1e6:.1f} MB", file=sys.stderr)

    ensure_models(args.models, progress=progress)
    print(f"all model files present under {args.models}")
    if not args.verify:
        return 0
    from .download import verify
    from .layout import FILES

    report = verify(args.models, [f for f in FILES if f.find(args.models) is not None])
    for role, result in report.items():
        print(f"{role}: {result}")
    bad = [r for r, result in report.items() if not result.startswith("ok")]
    if bad:
        print(f"error: {len(bad)} file(s) differ from the hub's: {', '.join(bad)}; delete them and run "
              f"`python -m mn_core download --models {args.models}` again", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    from .download import DownloadError
    from .evaluate import EvaluateError
    from .images import ImageError
    from .metric_nets import MetricNetError
    from .loading import CheckpointError
    from .points import PointsError

    handlers = {"colorize": cmd_colorize, "sequence": cmd_sequence, "points": cmd_points, "evaluate": cmd_evaluate,
                "parity": cmd_parity, "download": cmd_download}
    try:
        return handlers[args.command](args)
    except (CliError, CheckpointError, ImageError, PointsError, DownloadError, EvaluateError, MetricNetError,
            ValueError, OSError) as e:
        message = " ".join(str(e).split())  # one line, whatever the message layout
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
