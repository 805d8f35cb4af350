"""Every public fixture case of the official code must PASS in float32 on the CPU."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from support import FIXTURES, ROOT, fixture_cases, require

CASES = fixture_cases()


@pytest.mark.parametrize("case", CASES or [None], ids=[c.name for c in CASES] or ["missing"])
def test_fixture_case_passes(case, capsys):
    if case is None:
        require(FIXTURES / "cases", "parity fixture cases", "MN_FIXTURES")
        pytest.fail(f"no cases under {FIXTURES / 'cases'}")
    from mn_core.parity import run_case

    report = run_case(case)
    print("\n".join(report.lines()))
    failed = [f"{r.name}: {r.max_abs:.3e} > {r.tolerance}" for r in report.rows if not r.ok]
    assert report.passed, failed
    gated = {r.name for r in report.rows if r.tolerance is not None}
    assert {"lineart_cond", "clip_image_embed", "null_text_embed", "eps_uncond", "eps_ref", "eps_point",
            "final_latents", "decoded_image", "output.png"} <= gated


def _copy_case(case, tmp_path):
    dst = tmp_path / case.name
    shutil.copytree(case, dst)
    meta = json.loads((dst / "case.json").read_text())
    meta["weights_dir"] = str((case / meta["weights_dir"]).resolve())
    (dst / "case.json").write_text(json.dumps(meta))
    return dst


def test_parity_cli_pass_and_fail(tmp_path):
    cases = CASES or pytest.fail(f"no parity cases under {FIXTURES}")
    case = _copy_case(cases[0], tmp_path)
    run = subprocess.run([sys.executable, "-m", "mn_core", "parity", str(case)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-1] == "PASS"
    assert any(line.strip().startswith("final_latents") and "tol" in line for line in lines)

    # Corrupt one expected array slightly beyond its tolerance: the runner must say FAIL and exit 1.
    path = case / "expected" / "final_latents.npy"
    arr = np.load(path)
    arr.flat[0] += 0.01
    np.save(path, arr)
    run = subprocess.run([sys.executable, "-m", "mn_core", "parity", str(case)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1
    assert run.stdout.strip().splitlines()[-1] == "FAIL"
    assert "final_latents" in [line.split()[0] for line in run.stdout.splitlines() if "FAIL" in line and line.startswith("  ")]
