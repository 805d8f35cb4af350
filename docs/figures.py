"""Draw the README's figures and the sample inputs from the project's own drawings: ``python docs/figures.py``.

``samples/``: the images the shipped workflows load (manganinja_reference.png, ...) and the README's quick start
uses: copy them into ComfyUI's input folder, or pass them to the CLI.

``full_page.png``: crops at 100 % of a page finished at full resolution (Finish Page, flat colours) next to the
512-px colour resized up.

``multi_reference.png``: two coloured references (two characters), the line art of both in one panel, what the
model sees in each mode (tile: one square holding both references; bank: one square per reference), and the result
of each mode. The results come from TINY RANDOM weights (real weights cannot be downloaded where this runs), so
they show the mechanics and the layout, not colouring quality; the caption in the image says so. With real weights
(``--models DIR``) the same script shows real results.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mn_core import MangaNinja, synthetic  # noqa: E402
from mn_core.images import Fit  # noqa: E402

SIZE = 256  # processing size (TINY weights); real weights: 512
PANEL = 200
INK = (25, 25, 25)


def character_a(lines_only: bool = False, scale: int = 1) -> Image.Image:
    """A round-headed girl: orange hair, pale skin, blue dress (``scale``: drawn that many times larger)."""
    img = Image.new("RGB", (180 * scale, 240 * scale), "white")
    d = ImageDraw.Draw(img)
    fill = (lambda c: None) if lines_only else (lambda c: c)
    k = (lambda *xy: [v * scale for v in xy])
    w = 3 * scale
    d.ellipse(k(40, 10, 140, 110), fill=fill((235, 120, 40)), outline=INK, width=w)  # hair
    d.ellipse(k(55, 35, 125, 105), fill=fill((250, 225, 200)), outline=INK, width=w)  # face
    d.ellipse(k(72, 60, 80, 68), fill=INK)
    d.ellipse(k(100, 60, 108, 68), fill=INK)
    d.polygon([tuple(k(50, 235)), tuple(k(90, 110)), tuple(k(130, 235))], fill=fill((50, 90, 210)), outline=INK,
              width=w)  # dress
    return img


def character_b(lines_only: bool = False) -> Image.Image:
    """A square-headed boy: yellow cap, green jacket, dark trousers."""
    img = Image.new("RGB", (160, 240), "white")
    d = ImageDraw.Draw(img)
    fill = (lambda c: None) if lines_only else (lambda c: c)
    d.rectangle((45, 40, 115, 105), fill=fill((245, 215, 185)), outline=INK, width=3)  # face
    d.chord((40, 10, 120, 70), 180, 360, fill=fill((240, 210, 40)), outline=INK, width=3)  # cap
    d.rectangle((60, 65, 68, 73), fill=INK)
    d.rectangle((92, 65, 100, 73), fill=INK)
    d.rectangle((35, 108, 125, 175), fill=fill((60, 160, 80)), outline=INK, width=3)  # jacket
    d.rectangle((50, 175, 110, 235), fill=fill((60, 60, 90)), outline=INK, width=3)  # trousers
    d.line((80, 175, 80, 235), fill=INK, width=3)
    return img


def lineart_panel() -> Image.Image:
    """Both characters in one panel, lines only (black on white), b a little larger and in front."""
    panel = Image.new("L", (360, 260), 255)
    panel.paste(character_a(True).convert("L"), (10, 15))
    panel.paste(character_b(True).convert("L").resize((176, 244)), (180, 8))
    return panel


def samples(folder: Path) -> list[Path]:
    """The workflows' inputs (workflows/build.py INPUT_IMAGES): reference, line art, a second frame (the drawing a
    little to the right), and a second character (the extract workflow's target, the multi-reference one's second
    reference)."""
    line = character_a(True).convert("L")
    frame2 = Image.new("L", line.size, 255)
    frame2.paste(line.crop((0, 0, line.width - 12, line.height)), (12, 0))
    images = {"manganinja_reference.png": character_a(), "manganinja_lineart.png": line,
              "manganinja_frame2.png": frame2, "manganinja_target.png": character_b(),
              "manganinja_page.png": character_a(True, scale=6).convert("L")}  # full resolution: 1080x1440
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        image.save(folder / name, optimize=True)
    return [folder / name for name in images] + [shot(line, folder / "manganinja_lineart.mp4")]


def shot(line: Image.Image, path: Path, frames: int = 8, fps: int = 8) -> Path:
    """The line art walking right, as an H.264 MP4 (manganinja_sequence_video's input), written with PyAV."""
    import av  # the optional extra "video"

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = line.width, line.height, "yuv420p"
        for k in range(frames):
            frame = Image.new("RGB", line.size, "white")
            frame.paste(line.convert("RGB").crop((0, 0, line.width - 3 * k, line.height)), (3 * k, 0))
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())
    return path


def tile(image: Image.Image, title: str, font) -> Image.Image:
    """The image fitted into a PANEL square, with a title above."""
    out = Image.new("RGB", (PANEL, PANEL + 22), (245, 245, 245))
    fit = Fit("letterbox", image.size, PANEL)
    out.paste(fit.apply(image.convert("RGB"), fill=245), (0, 22))
    left, top, w, h = fit.box
    d = ImageDraw.Draw(out)
    d.rectangle((left, 22 + top, left + w - 1, 22 + top + h - 1), outline=(160, 160, 160))  # the image's extent
    d.text((4, 4), title, fill=(20, 20, 20), font=font)
    return out


def multi_reference(models: Path | None, out: Path, steps: int) -> Path:
    caption = (f"Results with the weights in {models}." if models else
               "Results from TINY RANDOM weights (no real weights here): the mechanics and layout, not quality.")
    with tempfile.TemporaryDirectory() as tmp:
        if models is None:
            models = Path(tmp) / "models"
            synthetic.write_layout(models, synthetic.TINY, seed=0)
        mn = MangaNinja.from_folder(models, device="cpu", precision="fp32")
        refs = [character_a(), character_b()]
        line = lineart_panel()
        encoded = {mode: mn.encode_references(refs, mode=mode, size=SIZE, seed=0) for mode in ("tile", "bank")}
        results = {mode: mn.colorize(ref, line, steps=steps, seed=0).image for mode, ref in encoded.items()}
    bank_squares = [Fit("letterbox", r.size, SIZE).apply(r, fill=255) for r in refs]
    font = ImageFont.load_default()
    row1 = [tile(refs[0], "reference 1", font), tile(refs[1], "reference 2", font), tile(line, "line art", font)]
    row2 = [tile(encoded["tile"].image, "tile: the model sees", font),
            tile(Image.fromarray(np.hstack([np.asarray(s) for s in bank_squares])), "bank: one square each", font),
            Image.new("RGB", (PANEL, PANEL + 22), (245, 245, 245))]
    row3 = [tile(results["tile"], "result, tile", font), tile(results["bank"], "result, bank", font),
            Image.new("RGB", (PANEL, PANEL + 22), (245, 245, 245))]
    width, height = 3 * PANEL + 4 * 8, 3 * (PANEL + 22) + 4 * 8 + 20
    sheet = Image.new("RGB", (width, height), "white")
    for r, row in enumerate((row1, row2, row3)):
        for c, img in enumerate(row):
            sheet.paste(img, (8 + c * (PANEL + 8), 8 + r * (PANEL + 30)))
    ImageDraw.Draw(sheet).text((8, height - 18), caption, fill=(120, 20, 20), font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return out


def full_page(out: Path, scale: int = 6) -> Path:
    """Crops at 100 % of a page finished at full resolution, against the 512-px colour resized up (what the pack
    did before). The colour is the drawing's own colours at 512 px, lines drawn in: a stand-in for the model's
    output (real weights are not available where this is made), so the figure shows what finishing does to any
    colour the model gives."""
    from mn_core.finish import finish_page

    lines = character_a(True, scale).convert("L")
    coloured = character_a(False, scale)
    k = 512 / max(coloured.size)
    colour = coloured.resize((round(coloured.width * k), round(coloured.height * k)), Image.BICUBIC)
    before = colour.resize(lines.size, Image.BICUBIC)
    smooth = finish_page(colour, lines)
    flat = finish_page(colour, lines, flat=True)
    box = (52 * scale, 40 * scale, 102 * scale, 90 * scale)  # the hair, the face and an eye
    crops = [(before, "512 px colour resized up (before)"), (smooth.image, "Finish Page"),
             (flat.image, "Finish Page, flat colours"), (flat.colour, "flat colour layer (no lines)")]
    font = ImageFont.load_default()
    w, h = box[2] - box[0], box[3] - box[1]
    sheet = Image.new("RGB", (len(crops) * (w + 8) + 8, h + 58), "white")
    d = ImageDraw.Draw(sheet)
    for c, (image, title) in enumerate(crops):
        sheet.paste(image.convert("RGB").crop(box), (8 + c * (w + 8), 24))
        d.text((8 + c * (w + 8), 6), title, fill=(20, 20, 20), font=font)
    d.text((8, h + 36), f"Crops at 100 % of a {lines.width}x{lines.height} page. Colour: the drawing's own colours "
           "at 512 px (lines drawn in), standing in for the model's output.", fill=(120, 20, 20), font=font)
    sheet.save(out, optimize=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=None, help="a model folder (default: tiny random weights)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "multi_reference.png")
    args = ap.parse_args(argv)
    for path in samples(ROOT / "docs" / "samples"):
        print("wrote", path)
    print("wrote", multi_reference(args.models, args.out, args.steps))
    print("wrote", full_page(ROOT / "docs" / "full_page.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
