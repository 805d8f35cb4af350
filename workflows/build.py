"""The shipped workflows, described once and written in both ComfyUI formats.

``python workflows/build.py`` rewrites ``workflows/<name>.json`` (UI format: drag-and-drop and the template
browser) and ``workflows/api/<name>.json`` (API format, what the tests queue). A test checks that the committed
files are what this produces, and that every widget matches the nodes' INPUT_TYPES.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"

# Images the API workflows read from ComfyUI's input folder (the tests upload them).
INPUT_IMAGES = ("manganinja_reference.png", "manganinja_lineart.png", "manganinja_frame2.png",
                "manganinja_target.png", "manganinja_page.png")
INPUT_VIDEOS = ("manganinja_lineart.mp4",)  # frames of line art (the tests write one)

EXAMPLE_POINTS = json.dumps({"pairs": []})


@dataclass
class Node:
    id: int
    type: str
    pos: tuple[int, int]
    size: tuple[int, int]
    widgets: list[tuple[str, object]] = field(default_factory=list)  # (input name, value); None name = UI-only
    inputs: list[tuple[str, str, tuple[int, int] | None]] = field(default_factory=list)  # (name, type, (src, slot))
    outputs: list[tuple[str, str]] = field(default_factory=list)
    title: str | None = None


SEED_CONTROL = (None, "fixed")  # the frontend's "control after generate" widget value (UI format only)


def load_image(id_, pos, filename, title):
    return Node(id_, "LoadImage", pos, (315, 314), [("image", filename), ("upload", "image")],
                outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")], title=title)


def loader(id_, pos):
    return Node(id_, "MangaNinjaLoader", pos, (315, 180),
                [("precision", "auto"), ("download", True), ("clip_vision", "auto"), ("vae", "auto"),
                 ("controlnet", "auto"), ("checkpoint", "auto")], outputs=[("model", "MANGANINJA_MODEL")],
                title="Load MangaNinja")


def more_references(more=()) -> list:
    """The optional inputs reference_2..4 (Reference Encode, Point Editor), fed by the sources in ``more``."""
    return [(name, "IMAGE", src) for name, src in zip(("reference_2", "reference_3", "reference_4"),
                                                       list(more) + [None] * 3)]


def reference_encode(id_, pos, model, image, more=(), combine="tile"):
    return Node(id_, "MangaNinjaReferenceEncode", pos, (315, 200),
                [("size", 512), ("fit", "letterbox"), ("reference_seed", 0), ("combine", combine)],
                [("model", "MANGANINJA_MODEL", model), ("reference", "IMAGE", image)] + more_references(more),
                [("reference", "MANGANINJA_REFERENCE")], title="Reference Encode")


def sampler(id_, pos, model, reference, lineart=None, points=None, seed=0, prepared=None, previous_frame=False):
    inputs = [("model", "MANGANINJA_MODEL", model), ("reference", "MANGANINJA_REFERENCE", reference),
              ("lineart", "IMAGE", lineart), ("prepared_lineart", "MANGANINJA_LINEART", prepared),
              ("points", "MANGANINJA_POINTS", points)]
    return Node(id_, "MangaNinjaColorizeSampler", pos, (315, 262),
                [("steps", 50), ("seed", seed), SEED_CONTROL, ("guidance_ref", 9.0), ("guidance_point", 15.0),
                 ("fit", "letterbox"), ("lineart_polarity", "auto"), ("previous_frame", previous_frame),
                 ("same_noise", False), ("frames_per_call", 1)], inputs,
                [("image", "IMAGE"), ("lineart", "IMAGE")], title="Colorize Sampler")


def save(id_, pos, image, prefix):
    return Node(id_, "SaveImage", pos, (400, 420), [("filename_prefix", prefix)], [("images", "IMAGE", image)],
                title="Save coloured")


def preview(id_, pos, image, title):
    return Node(id_, "PreviewImage", pos, (300, 300), [], [("images", "IMAGE", image)], title=title)


def basic() -> list[Node]:
    return [
        load_image(1, (40, 60), "manganinja_reference.png", "Reference (coloured)"),
        load_image(2, (40, 430), "manganinja_lineart.png", "Line art"),
        loader(3, (400, 60)),
        reference_encode(4, (400, 290), (3, 0), (1, 0)),
        sampler(5, (760, 60), (3, 0), (4, 0), (2, 0)),
        save(6, (1120, 60), (5, 0), "manganinja"),
        preview(7, (1120, 520), (5, 1), "Line art used"),
    ]


def point_editor(id_, pos, reference, lineart, more=()):
    return Node(id_, "MangaNinjaPointEditor", pos, (700, 520), [("points", EXAMPLE_POINTS)],
                [("reference", "IMAGE", reference), ("lineart", "IMAGE", lineart),
                 ("reference_coordinates", "STRING", None), ("lineart_coordinates", "STRING", None)]
                + more_references(more),
                [("points", "MANGANINJA_POINTS")], title="Point Editor")


def with_points() -> list[Node]:
    nodes = basic()
    nodes[4] = sampler(5, (760, 60), (3, 0), (4, 0), (2, 0), points=(8, 0))
    nodes.append(point_editor(8, (400, 500), (1, 0), (2, 0)))
    nodes[3].pos = (400, 290)
    return nodes


def suggest_points(id_, pos, reference, lineart, max_pairs=12):
    return Node(id_, "MangaNinjaSuggestPoints", pos, (315, 130),
                [("max_pairs", max_pairs), ("min_confidence", 0.0), ("lineart_is_colour", False)],
                [("reference", "IMAGE", reference), ("lineart", "IMAGE", lineart)],
                [("points", "MANGANINJA_POINTS"), ("points_json", "STRING")], title="Suggest Points")


def auto_points() -> list[Node]:
    """Points without clicking: Suggest Points finds the pairs (no weights), the sampler uses them headless."""
    nodes = basic()
    nodes[4] = sampler(5, (760, 60), (3, 0), (4, 0), (2, 0), points=(8, 0))
    nodes.append(suggest_points(8, (400, 520), (1, 0), (2, 0)))
    return nodes


def batch() -> list[Node]:
    return [
        load_image(1, (40, 60), "manganinja_reference.png", "Reference (coloured)"),
        load_image(2, (40, 430), "manganinja_lineart.png", "Frame 1 (line art)"),
        load_image(3, (40, 800), "manganinja_frame2.png", "Frame 2 (line art)"),
        Node(4, "ImageBatch", (400, 600), (210, 50), [], [("image1", "IMAGE", (2, 0)), ("image2", "IMAGE", (3, 0))],
             [("IMAGE", "IMAGE")], title="Frames"),
        loader(5, (400, 60)),
        reference_encode(6, (400, 290), (5, 0), (1, 0)),
        sampler(7, (760, 60), (5, 0), (6, 0), (4, 0)),
        save(8, (1120, 60), (7, 0), "manganinja_batch"),
    ]


def extract() -> list[Node]:
    return [
        load_image(1, (40, 60), "manganinja_reference.png", "Reference (coloured)"),
        load_image(2, (40, 430), "manganinja_target.png", "Target (colour or grey)"),
        loader(3, (400, 60)),
        Node(4, "MangaNinjaExtractLineart", (400, 500), (315, 250),
             [("mode", "extract"), ("polarity", "auto"), ("binarize", 0.0), ("cleanup", True), ("size", 512),
              ("fit", "letterbox"), ("output", "black_on_white")],
             [("image", "IMAGE", (2, 0)), ("model", "MANGANINJA_MODEL", (3, 0))],
             [("lineart", "IMAGE"), ("prepared", "MANGANINJA_LINEART")], title="Extract Lineart"),
        reference_encode(5, (400, 290), (3, 0), (1, 0)),
        sampler(6, (760, 60), (3, 0), (5, 0), prepared=(4, 1)),
        save(7, (1120, 60), (6, 0), "manganinja_extract"),
        preview(8, (760, 420), (4, 0), "Extracted line art"),
    ]


def metrics(id_, pos, image, target, names="psnr, ssim"):
    return Node(id_, "MangaNinjaColorizationMetrics", pos, (440, 300), [("metrics", names), ("sequence", False)],
                [("image", "IMAGE", image), ("target", "IMAGE", target)],
                [("report", "STRING"), ("psnr", "FLOAT"), ("ssim", "FLOAT")], title="Colorization Metrics")


def evaluate() -> list[Node]:
    """The papers' protocol in a graph: the target's line art extracted, coloured, and scored against the target."""
    nodes = extract()
    return [*nodes, metrics(9, (1120, 520), (6, 0), (2, 0))]


def multi_reference() -> list[Node]:
    return [
        load_image(1, (40, 60), "manganinja_reference.png", "Reference 1 (coloured)"),
        load_image(9, (40, 430), "manganinja_target.png", "Reference 2 (coloured)"),
        load_image(2, (40, 800), "manganinja_lineart.png", "Line art"),
        loader(3, (400, 60)),
        reference_encode(4, (400, 290), (3, 0), (1, 0), more=[(9, 0)], combine="tile"),
        sampler(5, (760, 60), (3, 0), (4, 0), (2, 0), points=(8, 0)),
        save(6, (1120, 60), (5, 0), "manganinja_multi"),
        point_editor(8, (400, 560), (1, 0), (2, 0), more=[(9, 0)]),
    ]


def sequence() -> list[Node]:
    return [
        load_image(1, (40, 60), "manganinja_reference.png", "Keyframe reference (coloured)"),
        load_image(2, (40, 430), "manganinja_lineart.png", "Frame 1 (line art)"),
        load_image(3, (40, 800), "manganinja_frame2.png", "Frame 2 (line art)"),
        Node(4, "ImageBatch", (400, 600), (210, 50), [], [("image1", "IMAGE", (2, 0)), ("image2", "IMAGE", (3, 0))],
             [("IMAGE", "IMAGE")], title="Frames (in order)"),
        loader(5, (400, 60)),
        reference_encode(6, (400, 290), (5, 0), (1, 0)),
        sampler(7, (760, 60), (5, 0), (6, 0), (4, 0), previous_frame=True),
        save(8, (1120, 60), (7, 0), "manganinja_sequence"),
    ]


def sequence_video() -> list[Node]:
    """The shot as a video file: ComfyUI's own Load Video / Get Video Components in, Create Video (same frame rate
    and sound) / Save Video out. Needs a ComfyUI with those nodes (VIDEO_NODES); manganinja_sequence does the same
    with image batches on any server."""
    return [
        load_image(1, (40, 60), "manganinja_reference.png", "Keyframe reference (coloured)"),
        Node(2, "LoadVideo", (40, 430), (315, 400), [("file", INPUT_VIDEOS[0]), ("upload", "image")], [],
             [("VIDEO", "VIDEO")], title="Line-art shot (video)"),
        Node(3, "GetVideoComponents", (40, 880), (250, 100), [], [("video", "VIDEO", (2, 0))],
             [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")], title="Frames"),
        loader(5, (400, 60)),
        reference_encode(6, (400, 290), (5, 0), (1, 0)),
        sampler(7, (760, 60), (5, 0), (6, 0), (3, 0), previous_frame=True),
        Node(8, "CreateVideo", (1120, 60), (270, 100), [("fps", 30.0)],
             [("images", "IMAGE", (7, 0)), ("audio", "AUDIO", (3, 1)), ("fps", "FLOAT", (3, 2))],
             [("VIDEO", "VIDEO")], title="Coloured frames to video"),
        Node(9, "SaveVideo", (1120, 220), (400, 420), [("filename_prefix", "video/manganinja_sequence"),
                                                       ("format", "auto"), ("codec", "auto")],
             [("video", "VIDEO", (8, 0))], title="Save coloured shot"),
    ]


def finish_page(id_, pos, image, lineart, flat=True):
    return Node(id_, "MangaNinjaFinishPage", pos, (340, 300),
                [("lineart_polarity", "auto"), ("flat", flat), ("close_gaps", 8), ("colour_size", 512),
                 ("prior_strength", 0.8)],
                [("image", "IMAGE", image), ("lineart", "IMAGE", lineart), ("page", "IMAGE", None),
                 ("prior", "IMAGE", None)],
                [("image", "IMAGE"), ("colour", "IMAGE"), ("lines", "IMAGE"), ("line_alpha", "MASK"),
                 ("layers", "MANGANINJA_LAYERS")], title="Finish Page (full resolution)")


def full_page() -> list[Node]:
    """A page at print resolution: coloured at the processing size, finished at the page's own size (original
    lines, flat colours), saved as a flattened PNG and as a layered PSD."""
    return [
        load_image(1, (40, 60), "manganinja_reference.png", "Reference (coloured)"),
        load_image(2, (40, 430), "manganinja_page.png", "Page line art (full resolution)"),
        loader(3, (400, 60)),
        reference_encode(4, (400, 290), (3, 0), (1, 0)),
        sampler(5, (760, 60), (3, 0), (4, 0), (2, 0)),
        finish_page(6, (760, 420), (5, 0), (2, 0)),
        save(7, (1120, 60), (6, 0), "manganinja_page"),
        Node(8, "MangaNinjaSaveLayers", (1120, 520), (320, 120),
             [("filename_prefix", "manganinja_page_layers"), ("png_layers", True)],
             [("layers", "MANGANINJA_LAYERS", (6, 4))], [], title="Save Layers (PSD)"),
    ]


VIDEO_NODES = ("LoadVideo", "GetVideoComponents", "CreateVideo", "SaveVideo")  # ComfyUI's own (not in 2024's)
NEEDS = {"manganinja_sequence_video": VIDEO_NODES}  # workflows that need core nodes not every server has

GRAPHS = {"manganinja_basic": basic, "manganinja_points": with_points, "manganinja_auto_points": auto_points,
          "manganinja_batch": batch,
          "manganinja_extract": extract, "manganinja_multi_reference": multi_reference,
          "manganinja_sequence": sequence, "manganinja_sequence_video": sequence_video,
          "manganinja_evaluate": evaluate, "manganinja_full_page": full_page}


def to_api(nodes: list[Node]) -> dict:
    out = {}
    for n in nodes:
        inputs = {name: value for name, value in n.widgets if name is not None and name != "upload"}
        for name, _type, src in n.inputs:
            if src is not None:
                inputs[name] = [str(src[0]), src[1]]
        out[str(n.id)] = {"class_type": n.type, "inputs": inputs, "_meta": {"title": n.title or n.type}}
    return out


def to_ui(nodes: list[Node]) -> dict:
    links = []
    for n in nodes:
        for slot, (_name, typ, src) in enumerate(n.inputs):
            if src is not None:
                links.append([len(links) + 1, src[0], src[1], n.id, slot, typ])
    ui_nodes = []
    for order, n in enumerate(nodes):
        widget_names = {k for k, _v in n.widgets}
        inputs = [{"name": name, "type": typ,
                   "link": next((lk[0] for lk in links if lk[3] == n.id and lk[4] == slot), None),
                   **({"widget": {"name": name}} if name in widget_names else {})}  # a widget fed by a link
                  for slot, (name, typ, _src) in enumerate(n.inputs)]
        outputs = []
        for slot, (name, typ) in enumerate(n.outputs):
            used = [lk[0] for lk in links if lk[1] == n.id and lk[2] == slot]
            outputs.append({"name": name, "type": typ, "links": used or None, "slot_index": slot})
        node = {"id": n.id, "type": n.type, "pos": list(n.pos), "size": list(n.size), "flags": {}, "order": order,
                "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": n.type}, "widgets_values": [v for _k, v in n.widgets]}
        if n.title:
            node["title"] = n.title
        ui_nodes.append(node)
    return {"last_node_id": max(n.id for n in nodes), "last_link_id": len(links), "nodes": ui_nodes,
            "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def render() -> dict[Path, str]:
    files = {}
    for name, build in GRAPHS.items():
        nodes = build()
        files[WORKFLOWS / f"{name}.json"] = json.dumps(to_ui(nodes), indent=1) + "\n"
        files[WORKFLOWS / "api" / f"{name}.json"] = json.dumps(to_api(nodes), indent=1) + "\n"
    return files


if __name__ == "__main__":
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print("wrote", path.relative_to(ROOT))
