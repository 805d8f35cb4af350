"""A shot's frames in and out: a folder of images or a video (PyAV) as indexed line-art frames, and the outputs for
people: a contact sheet of the coloured frames and, for video input, an MP4 at the source frame rate."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image, ImageDraw

from .images import ImageError, open_image
from .runner import atomic_file, digest_bytes, digest_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
CONTACT_SHEET = "contact_sheet.png"
VIDEO_OUT = "coloured.mp4"


class FramesError(ValueError):
    """The frames cannot be read; the message names the input."""


@dataclass
class FrameSource:
    """Indexed frames: ``names`` (the output file of each), their bytes, where they came from."""

    names: list[str]
    identity: object                # for the run's settings hash: per-file digests, or the video's digest
    fps: Fraction | None = None     # video input only
    _files: list[Path] | None = None
    _frames: list[bytes] | None = None  # video: each frame as PNG bytes (line art compresses well)

    def __len__(self) -> int:
        return len(self.names)

    def data(self, index: int) -> bytes:
        return self._files[index].read_bytes() if self._files is not None else self._frames[index]

    def image(self, index: int) -> Image.Image:
        what = self._files[index] if self._files is not None else f"frame {index}"
        try:
            return open_image(self.data(index), what=f"--frames {what}")
        except ImageError as e:
            raise FramesError(str(e)) from None


def open_frames(path: Path) -> FrameSource:
    path = Path(path)
    if path.is_dir():
        files = sorted((f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda f: f.name)
        if not files:
            raise FramesError(f"--frames {path}: no image files here ({', '.join(IMAGE_SUFFIXES)})")
        names = [f.stem + ".png" for f in files]
        seen: dict[str, Path] = {}
        for f, name in zip(files, names):
            if name in seen:
                raise FramesError(f"--frames {path}: {seen[name].name} and {f.name} would both be written as {name}")
            if name in (CONTACT_SHEET,):
                raise FramesError(f"--frames {path}: {f.name} would be written as {name}, the contact sheet's name")
            seen[name] = f
        return FrameSource(names, [[f.name, digest_file(f)] for f in files], _files=files)
    if not path.is_file():
        raise FramesError(f"--frames {path}: no such folder or video file")
    try:
        import av
    except ImportError:
        raise FramesError(f"--frames {path}: reading video needs PyAV: pip install av") from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FramesError(f"--frames {path}: no video stream in this file")
            stream = container.streams.video[0]
            fps = stream.average_rate
            frames = []
            for frame in container.decode(stream):
                buf = io.BytesIO()
                frame.to_image().save(buf, format="PNG")
                frames.append(buf.getvalue())
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise FramesError(f"--frames {path}: not a readable video ({e})") from None
    if not frames:
        raise FramesError(f"--frames {path}: the video has no frames")
    names = [f"frame_{k:05d}.png" for k in range(len(frames))]
    return FrameSource(names, {"video": digest_file(path), "frames": digest_bytes(b"".join(frames))},
                       fps=Fraction(fps) if fps else None, _frames=frames)


def contact_sheet(frame, names: list[str], *, width: int = 1600, columns: int | None = None) -> Image.Image:
    """A grid of the frames (in order, each labelled with its name), ``width`` px wide. ``frame(k)`` opens frame
    k: one frame at a time is held, so a shot of any length fits in memory."""
    n = len(names)
    cols = columns or max(1, min(n, math.ceil(math.sqrt(n * 16 / 9))))
    rows = math.ceil(n / cols)
    tw = max(16, (width - 4 * (cols + 1)) // cols)
    sheet = d = th = None
    for k, name in enumerate(names):
        with frame(k) as img:
            if sheet is None:
                th = max(8, round(tw * img.height / img.width))
                sheet = Image.new("RGB", (cols * (tw + 4) + 4, rows * (th + 16) + 4), (235, 235, 235))
                d = ImageDraw.Draw(sheet)
            x, y = 4 + (k % cols) * (tw + 4), 4 + (k // cols) * (th + 16)
            sheet.paste(img.convert("RGB").resize((tw, th), Image.BOX), (x, y))
        d.text((x, y + th + 2), name[:max(4, tw // 6)], fill=(40, 40, 40))
    return sheet


def write_outputs(out: Path, names: list[str], fps: Fraction | None, *, sheet_width: int = 1600) -> list[Path]:
    """The contact sheet (and for video input the MP4) from the finished frames in ``out``, each written
    atomically, reading one frame at a time."""
    def frame(k: int) -> Image.Image:
        return Image.open(out / names[k])

    written = [out / CONTACT_SHEET]
    with atomic_file(out / CONTACT_SHEET) as f:
        contact_sheet(frame, names, width=sheet_width).save(f, format="PNG")
    if fps is not None:
        with atomic_file(out / VIDEO_OUT) as f:
            write_mp4(f, (frame(k) for k in range(len(names))), fps)
        written.append(out / VIDEO_OUT)
    return written


def write_mp4(file, frames, fps: Fraction) -> None:
    """H.264 MP4 at ``fps`` into the binary ``file``, from an iterable of frames (each closed once encoded; one
    encoding thread, no timestamps in the file: the same frames give the same bytes)."""
    import av

    with av.open(file, "w", format="mp4") as container:
        stream = None
        for img in frames:
            with img:
                if stream is None:
                    w, h = img.size
                    stream = container.add_stream("libx264", rate=fps)
                    stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
                    stream.codec_context.thread_count = 1
                    stream.options = {"crf": "18"}
                frame = av.VideoFrame.from_image(img.convert("RGB").crop((0, 0, w - w % 2, h - h % 2)))
            container.mux(stream.encode(frame))
        if stream is not None:
            container.mux(stream.encode())
