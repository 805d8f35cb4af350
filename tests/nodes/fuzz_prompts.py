"""Generated API prompts for fuzzing the real server (tests/nodes/test_comfyui_integration.py): random graphs of
the pack's nodes and mutations of the shipped workflows, reproducible from a seed."""

from __future__ import annotations

import copy
import json
import random

JUNK = [None, True, False, 0, -1, 1, 3, 2**31, 2**63, -(2**63), 1.5, -0.0, 1e308, -1e308, float("nan"),
        float("inf"), float("-inf"), "", "x", "auto", "fp32", "🙂", "a" * 5000, "1", "-1", "nan", "1e400", [], [1],
        ["1", 0], ["999", 0], ["1", 7], [1, 0], {}, {"a": 1}, [[0, 0], [1, 1]],
        '{"pairs": [{"reference": [1e309, 0], "lineart": [0, 0]}]}', '{"pairs": "x"}', "[[[1,2],[3]]]",
        '{"pairs": [{"reference": [-5, 3], "lineart": [2, 2]}]}', '{"frames": []}', "{", "null",
        '[{"x": 1, "y": 2}]', "psnr, nope", "all", "letterbox", "stretch", "crop"]
# inputs whose VALID values cost time: mutations keep them small when they stay valid
CHEAP = {"steps": 2, "size": 128, "frames_per_call": 2, "colour_size": 128, "max_pairs": 4, "close_gaps": 4}


def shrink(prompt: dict) -> dict:
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name, cheap in CHEAP.items():
            value = inputs.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > cheap:
                inputs[name] = cheap
    return prompt


def mutate(rng: random.Random, base: dict, classes: list[str]) -> dict:
    prompt = copy.deepcopy(base)
    for _ in range(rng.randint(1, 3)):
        ids = list(prompt)
        if not ids:
            break
        node = prompt[rng.choice(ids)]
        inputs = node.setdefault("inputs", {})
        what = rng.random()
        names = list(inputs)
        if what < 0.45 and names:  # a value replaced by junk, or a boundary of a number
            name = rng.choice(names)
            value = inputs[name]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and rng.random() < 0.5:
                inputs[name] = rng.choice([value - 1, value + 1, -value, value * 1000, 0, 0.5])
            else:
                inputs[name] = rng.choice(JUNK)
        elif what < 0.55 and names:  # an input removed
            del inputs[rng.choice(names)]
        elif what < 0.65:  # an unknown input added
            inputs[rng.choice(["bogus", "points", "reference", "size", "extra_" + str(rng.randint(0, 9))])] = \
                rng.choice(JUNK)
        elif what < 0.8 and names:  # a link to another node or slot (wrong types)
            inputs[rng.choice(names)] = [rng.choice(ids + ["0", "999"]), rng.randint(-1, 5)]
        elif what < 0.9:  # another class
            node["class_type"] = rng.choice(classes + ["NoSuchNode", "MangaNinjaNoSuch"])
        else:  # a node removed (links to it dangle)
            del prompt[rng.choice(ids)]
    return shrink(prompt)


def random_prompt(rng: random.Random, classes: list[str]) -> dict:
    n = rng.randint(1, 5)
    prompt = {}
    for k in range(1, n + 1):
        inputs = {}
        for _ in range(rng.randint(0, 6)):
            name = rng.choice(["model", "reference", "lineart", "points", "image", "target", "steps", "seed",
                               "size", "fit", "precision", "download", "metrics", "max_pairs", "layers",
                               "prepared_lineart", "guidance_ref", "combine", "mode", "flat"])
            inputs[name] = [str(rng.randint(1, n)), rng.randint(0, 3)] if rng.random() < 0.4 else rng.choice(JUNK)
        prompt[str(k)] = {"class_type": rng.choice(classes), "inputs": inputs}
    return shrink(prompt)


def generate(seed: int, count: int, bases: list[dict], classes: list[str]):
    """``count`` prompts: a third random graphs, the rest mutations of ``bases``; yields JSON-ready dicts."""
    rng = random.Random(seed)
    for _ in range(count):
        if rng.random() < 1 / 3:
            yield random_prompt(rng, classes)
        else:
            yield mutate(rng, rng.choice(bases), classes)


def encode(prompt: dict, client_id: str) -> bytes:
    return json.dumps({"prompt": prompt, "client_id": client_id}).encode()  # NaN/inf as JSON's extensions
