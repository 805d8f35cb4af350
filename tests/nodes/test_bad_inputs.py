"""Bad inputs for every node parameter and every typed CLI option: a clear error naming the input, never a traceback
from deep inside. The cases are generated from the nodes' INPUT_TYPES and the CLI parser, so a new parameter is
swept too; a few hand-written ones cover what only a node can know (batch sizes that must agree, wrong objects on
the custom types). The table of every case and its message is docs/bad_inputs.md, written from this test:
``MN_UPDATE_DOCS=1 pytest tests/nodes/test_bad_inputs.py`` rewrites it, and the test fails if it is stale.
"""

from __future__ import annotations

import argparse
import math
import os
import re

import pytest
import torch

from support import ROOT
from test_nodes import comfy_env, image_tensor, model, models_dir, pack  # noqa: F401 - fixtures

DOC = ROOT / "docs" / "bad_inputs.md"
ACCEPTED = (ValueError, FileNotFoundError)  # what the nodes and the CLI raise on purpose (InputError is a ValueError)
ROWS: dict[str, list[tuple[str, str, str, str]]] = {"node": [], "cli": []}


def bad_values(spec: tuple) -> list[tuple[str, object]]:
    """(label, value) pairs that must be refused for an INPUT_TYPES entry."""
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, (list, tuple)):
        return [("not a choice", "no_such_choice"), ("a number", 3)]
    if kind in ("INT", "FLOAT"):
        lo, hi = opts.get("min"), opts.get("max")
        out = [("NaN", math.nan), ("infinity", math.inf), ("text", "12")]
        if lo is not None:
            out.append(("below min", lo - 1))
        if hi is not None:
            out.append(("above max", hi + 1))
        if kind == "INT":
            out.append(("a fraction", (lo or 0) + 0.5))
            if opts.get("step", 1) > 1:
                out.append(("off step", (lo or 0) + opts["step"] // 2 + opts["step"]))
        return out
    if kind == "BOOLEAN":
        return [("text", "yes"), ("a number", 2)]
    if kind == "STRING":
        return [("a number", 7), ("a list", ["a"])]
    if kind == "IMAGE":
        return [("empty batch", torch.zeros(0, 64, 64, 3)), ("a MASK", torch.zeros(1, 64, 64)),
                ("2 channels", torch.zeros(1, 64, 64, 2)), ("NaN pixels", torch.full((1, 64, 64, 3), math.nan)),
                ("no pixels", torch.zeros(1, 0, 64, 3)), ("integers", torch.zeros(1, 64, 64, 3, dtype=torch.uint8)),
                ("a number", 0.5)]
    if kind == "MASK":
        return [("an IMAGE", torch.zeros(1, 64, 64, 3)), ("empty batch", torch.zeros(0, 64, 64))]
    return [("a number", 1), ("a dict", {"pairs": []})]  # custom types: checked by the node (bridge.expect)


@pytest.fixture(scope="module")
def valid(pack, model, sample_images):  # noqa: F811
    """One valid set of inputs per node: each case changes exactly one of them."""
    ref, line = image_tensor(sample_images["reference"]), image_tensor(sample_images["black_on_white"])
    n = pack.nodes
    encoded = n.reference.ReferenceEncode().encode(model, ref, 256, "letterbox", 0)[0]
    points = n.points.PointEditor().run(ref, line, '{"pairs": []}')["result"][0]
    prepared = n.lineart.ExtractLineart().extract(line, "drawn", "auto", 0.0, True, 256, "letterbox",
                                                  "black_on_white", model)[1]
    coloured = torch.rand(1, line.shape[1], line.shape[2], 3, generator=torch.Generator().manual_seed(0))
    layers = n.finish.FinishPage().finish(coloured, line, "auto", False, 8, 256, 0.8)[4]
    return {
        "MangaNinjaLoader": dict(precision="fp32", download=False),
        "MangaNinjaExtractLineart": dict(image=line, mode="drawn", polarity="auto", binarize=0.0, cleanup=True,
                                         size=256, fit="letterbox", output="black_on_white", model=model),
        "MangaNinjaPointEditor": dict(reference=ref, lineart=line, points='{"pairs": []}'),
        "MangaNinjaSuggestPoints": dict(reference=ref, lineart=line, max_pairs=4, min_confidence=0.0,
                                        lineart_is_colour=False),
        "MangaNinjaReferenceEncode": dict(model=model, reference=ref, size=256, fit="letterbox", reference_seed=0,
                                          combine="tile"),
        "MangaNinjaColorizeSampler": dict(model=model, reference=encoded, steps=1, seed=0, guidance_ref=9.0,
                                          guidance_point=15.0, fit="letterbox", lineart_polarity="auto",
                                          previous_frame=False, same_noise=False, frames_per_call=1, lineart=line,
                                          prepared_lineart=None, points=points),
        "MangaNinjaColorizationMetrics": dict(image=coloured, target=coloured, metrics="psnr", sequence=False),
        "MangaNinjaFinishPage": dict(image=coloured, lineart=line, lineart_polarity="auto", flat=False,
                                     close_gaps=8, colour_size=256, prior_strength=0.8),
        "MangaNinjaSaveLayers": dict(layers=layers, filename_prefix="mn_bad_inputs/page", png_layers=False),
    }, {"prepared": prepared}


def generated_cases(pack):  # noqa: F811
    cases = []
    for node, cls in pack.NODE_CLASS_MAPPINGS.items():
        types = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, spec in types.get(section, {}).items():
                for label, value in bad_values(spec):
                    cases.append((node, name, label, value))
    return cases


def extra_cases(valid_inputs, extras):
    """What only the node knows: batch sizes that must agree, the wrong custom object."""
    two = torch.rand(2, 96, 64, 3)
    three = torch.rand(3, 96, 64, 3)
    return [
        ("MangaNinjaColorizationMetrics", "target", "2 images, 3 targets", dict(image=two, target=three)),
        ("MangaNinjaFinishPage", "lineart", "2 colours, 3 line arts",
         dict(image=two, lineart=torch.cat([valid_inputs["MangaNinjaFinishPage"]["lineart"]] * 3))),
        ("MangaNinjaColorizeSampler", "lineart", "no line art at all", dict(lineart=None)),
        ("MangaNinjaColorizeSampler", "prepared_lineart", "Extract Lineart's IMAGE instead",
         dict(lineart=None, prepared_lineart=valid_inputs["MangaNinjaExtractLineart"]["image"])),
        ("MangaNinjaColorizeSampler", "reference", "an IMAGE instead of Reference Encode's output",
         dict(reference=valid_inputs["MangaNinjaPointEditor"]["reference"])),
        ("MangaNinjaPointEditor", "points", "not JSON", dict(points="{pairs: [")),
        ("MangaNinjaPointEditor", "points", "a point outside the image",
         dict(points='{"pairs": [{"reference": [9999, 5], "lineart": [5, 5]}]}')),
        ("MangaNinjaColorizationMetrics", "metrics", "an unknown metric", dict(metrics="psnr, sharpness")),
        ("MangaNinjaSaveLayers", "layers", "an empty list", dict(layers=[])),
    ]


def run_case(pack, node, name, overrides, valid_inputs):  # noqa: F811
    cls = pack.NODE_CLASS_MAPPINGS[node]
    kwargs = {**valid_inputs[node], **overrides}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        getattr(cls(), cls.FUNCTION)(**kwargs)
    except ACCEPTED as e:
        return e
    except Exception as e:  # noqa: BLE001 - reported as the failure
        return e
    return None


def shown(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    return repr(value)


def test_every_node_input_refuses_bad_values(pack, valid):  # noqa: F811
    valid_inputs, extras = valid
    failures = []
    names = pack.NODE_DISPLAY_NAME_MAPPINGS
    cases = [(node, name, label, {name: value}) for node, name, label, value in generated_cases(pack)]
    cases += extra_cases(valid_inputs, extras)
    for node, name, label, overrides in cases:
        err = run_case(pack, node, name, overrides, valid_inputs)
        if err is None:
            failures.append(f"{node}.{name} = {label}: accepted")
            continue
        message = " ".join(str(err).split())
        if not isinstance(err, ACCEPTED):
            failures.append(f"{node}.{name} = {label}: {type(err).__name__}: {message[:200]}")
            continue
        if name not in message:
            failures.append(f"{node}.{name} = {label}: the message does not name the input: {message[:200]}")
            continue
        ROWS["node"].append((names[node], name, label, message))
    assert not failures, f"{len(failures)} of {len(cases)} bad inputs not refused clearly:\n" + "\n".join(failures)
    assert len(ROWS["node"]) == len(cases) > 150


def cli_bad_values(action: argparse.Action) -> list[str]:
    from mn_core import cli

    by_type = {
        cli._positive_int: ["0", "-3", "2.5", "abc"],
        cli._non_negative_int: ["-1", "nan"],
        cli._size: ["100", "0", "abc"],
        cli._pairs: ["0", "25", "many"],
        cli._unit_interval: ["1.5", "-0.1", "nan"],
        cli._finite: ["nan", "inf", "abc"],
        cli._guidance: ["-1", "31", "nan", "inf"],
        cli._seed: ["-1", str(2**64), "1e3"],
        int: ["abc", "1.5"],
        float: ["abc"],
    }
    if action.choices:
        return ["no_such_choice"]
    return by_type.get(action.type, [])


def test_every_typed_cli_option_refuses_bad_values(capsys):
    from mn_core import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    failures, count = [], 0
    for command, subparser in sub.choices.items():
        for action in subparser._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            option = max(action.option_strings, key=len)
            if action.type is not None and action.type not in {cli._positive_int, cli._non_negative_int, cli._size,
                                                               cli._pairs, cli._unit_interval, cli._finite,
                                                               cli._guidance, cli._seed, int, float} \
                    and not action.choices:
                continue  # paths and free text: checked when the command opens them (tests/core/test_cli*.py)
            for value in cli_bad_values(action):
                count += 1
                with pytest.raises(SystemExit) as ei:
                    cli.main([command, option, value])
                err = capsys.readouterr().err
                line = next((ln for ln in err.splitlines() if "error:" in ln), "")
                if ei.value.code != 2 or option not in line or "Traceback" in err:
                    failures.append(f"{command} {option} {value}: exit {ei.value.code}, {err.strip()[-200:]}")
                    continue
                message = re.sub(r"^.*?error: ", "", line)
                ROWS["cli"].append((f"`{command}`", option, value, message))
    assert not failures, "\n".join(failures)
    assert count > 40


def render() -> str:
    lines = ["# Bad inputs and their messages", "",
             "Written by `tests/nodes/test_bad_inputs.py` from the cases it runs (regenerate with",
             "`MN_UPDATE_DOCS=1 pytest tests/nodes/test_bad_inputs.py`). Every node input is swept from the node's",
             "INPUT_TYPES; every typed option of `python -m mn_core`, from its parser. Each message names the input",
             "and the fix, and nothing is computed before it.", "",
             f"## Nodes ({len(ROWS['node'])} cases)", "", "| node | input | bad value | message |", "|---|---|---|---|"]
    for node, name, label, message in ROWS["node"]:
        lines.append(f"| {node} | `{name}` | {label} | {message.replace('|', '/')} |")
    lines += ["", f"## Command line ({len(ROWS['cli'])} cases)", "", "| command | option | value | message |",
              "|---|---|---|---|"]
    for command, option, value, message in ROWS["cli"]:
        lines.append(f"| {command} | `{option}` | `{value}` | {message.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def test_the_table_in_the_docs_is_current():
    if not ROWS["node"] or not ROWS["cli"]:
        pytest.skip("runs after the two sweeps above (run the whole file)")
    text = render()
    if os.environ.get("MN_UPDATE_DOCS") == "1":
        DOC.write_text(text, encoding="utf-8")
    assert DOC.is_file() and DOC.read_text(encoding="utf-8") == text, (
        "docs/bad_inputs.md is stale: run MN_UPDATE_DOCS=1 pytest tests/nodes/test_bad_inputs.py")
