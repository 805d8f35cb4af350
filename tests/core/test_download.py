"""mn_core.download against a local fake hub (tests/support/fake_hub.py): offline, 127.0.0.1 only, a few seconds."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT as REPO_ROOT
from support.fake_hub import CHUNK, FakeHub, closed_port_endpoint

from mn_core import download as dl
from mn_core.layout import BY_ROLE  # noqa: E402



def _bytes(n: int, seed: str) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def _add(hub: FakeHub, role: str, size: int, **knobs):
    lf = BY_ROLE[role]
    data = _bytes(size, role)
    return lf, data, hub.add(lf.repo, lf.repo_file, data, **knobs)


def _leftovers(root: Path) -> list[Path]:
    """Unfinished bytes anywhere under ``root`` (a finished download leaves none)."""
    return [p for p in root.rglob("*") if p.name.endswith((".part", ".incomplete"))]


def _part(root: Path, lf) -> Path:
    return root / dl.PARTIAL_DIR / f"{lf.path}.part"


def _only_in_partial_dir(root: Path) -> bool:
    """Unfinished bytes lie only where the loader never looks (never at or beside a layout path)."""
    return all(dl.PARTIAL_DIR in p.relative_to(root).parts for p in _leftovers(root))


def _resolve_path(lf) -> str:
    return f"/{lf.repo}/resolve/main/{lf.repo_file}"


# --- (a) files land at exactly <root>/<path> ---------------------------------------------------------------------


def test_downloads_land_at_layout_paths(hub, tmp_path, caplog):
    from huggingface_hub import constants

    assert constants.ENDPOINT != hub.endpoint  # env var set after import: download() must read it itself
    root = tmp_path / "ckpt"
    roles = {"unet_config": 700, "vae": 70_000, "clip_config": 300, "annotator": 20_000, "point_net": 33_333}
    expected = {}
    for role, size in roles.items():
        lf, data, _ = _add(hub, role, size)
        expected[role] = (lf, data)

    with caplog.at_level(logging.INFO, logger="mn_core.download"):
        out = dl.download(root, list(roles))

    assert set(out) == set(roles)
    for role, (lf, data) in expected.items():
        assert out[role] == root / lf.path
        assert (root / lf.path).read_bytes() == data
    assert _leftovers(root) == []
    # Each file's size and the hub's checksum are recorded: sha256 for LFS files, the git blob sha1 otherwise.
    record = dl.recorded(root)
    assert set(record) == {lf.path for lf, _ in expected.values()}
    for lf, data in expected.values():
        rec = record[lf.path]
        assert rec["size"] == len(data) and rec["commit"] == hub.commit(lf.repo)
        if lf.path.endswith(".json"):
            assert rec["git-sha1"] == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        else:
            assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert dl.verify(root, list(roles)) == {role: "ok" for role in roles}
    assert dl.check_sizes(root) == []

    # Only HEAD/GET on /resolve/ (hub) and GET on the LFS "CDN": no /api/ calls, nothing Xet.
    for r in hub.requests:
        assert (r.server, r.method) in {("hub", "HEAD"), ("hub", "GET"), ("cdn", "GET")}, r
        assert "/resolve/main/" in r.path if r.server == "hub" else r.path.startswith("/lfs/")
    heads = {r.path for r in hub.requests if r.method == "HEAD"}
    assert heads == {_resolve_path(lf) for lf, _ in expected.values()}
    assert {r.server for r in hub.requests if r.method == "GET" and r.file.lfs} == {"cdn"}

    started = [m for m in caplog.messages if m.startswith("Downloading ")]
    finished = [m for m in caplog.messages if m.startswith("Downloaded ")]
    assert len(started) == len(finished) == len(roles)
    assert any("point_net" in m and "33.3 KB" in m and "checksum" in m for m in finished)


def test_endpoint_argument_overrides_env(hub, tmp_path, monkeypatch):
    lf, data, _ = _add(hub, "clip_config", 123)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    out = dl.download(tmp_path, ["clip_config"], endpoint=hub.endpoint + "/")
    assert out["clip_config"].read_bytes() == data


def test_token_goes_to_hub_but_not_to_cdn(hub, tmp_path):
    _add(hub, "point_net", 5000)
    dl.download(tmp_path, ["point_net"], token="hf_test_token")
    head = [r for r in hub.requests if r.method == "HEAD"]
    cdn = [r for r in hub.requests if r.server == "cdn"]
    assert head and all(r.headers.get("authorization") == "Bearer hf_test_token" for r in head)
    assert cdn and all("authorization" not in r.headers for r in cdn)
    lf, _, _ = _add(hub, "unet_config", 300)  # a small file comes from the hub itself: the token goes with it
    dl.download(tmp_path, ["unet_config"], token="hf_test_token")
    gets = [r for r in hub.requests if r.method == "GET" and r.file is not None and r.file.path == lf.repo_file]
    assert gets and all(r.headers.get("authorization") == "Bearer hf_test_token" for r in gets)


# --- (b) present files are not fetched again ---------------------------------------------------------------------


def test_present_files_are_not_requested(hub, tmp_path):
    root = tmp_path
    pn = BY_ROLE["point_net"]
    (root / pn.path).parent.mkdir(parents=True)
    (root / pn.path).write_bytes(b"mine")
    du = BY_ROLE["denoising_unet"]
    alt = root / du.alternatives[0]  # .safetensors instead of .pth
    alt.write_bytes(b"alt!!")
    _add(hub, "point_net", 100)
    _add(hub, "denoising_unet", 100)
    lf_cfg, data_cfg, _ = _add(hub, "unet_config", 50)

    calls = []
    out = dl.download(root, ["point_net", "denoising_unet", "unet_config"], progress=lambda *a: calls.append(a))

    assert out["point_net"] == root / pn.path and (root / pn.path).read_bytes() == b"mine"
    assert out["denoising_unet"] == alt and not (root / du.path).exists()
    assert out["unet_config"].read_bytes() == data_cfg
    assert {r.path for r in hub.requests} == {_resolve_path(lf_cfg)}
    assert ("point_net", 4, 4) in calls and ("denoising_unet", 5, 5) in calls

    hub.requests.clear()
    again = dl.download(root, ["point_net", "denoising_unet", "unet_config"])
    assert again == out and hub.requests == []


def test_concurrent_calls_download_once(hub, tmp_path):
    import threading

    lf, data, f = _add(hub, "point_net", 30 * CHUNK)
    results, errors = [], []

    def run():
        try:
            results.append(dl.download(tmp_path, ["point_net"])["point_net"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == [] and results == [tmp_path / lf.path] * 3
    assert (tmp_path / lf.path).read_bytes() == data
    assert len(hub.requests_for(f, "HEAD")) == 1 and len(hub.gets(f)) == 1


def test_nothing_missing_needs_no_network(tmp_path, monkeypatch):
    pn = BY_ROLE["point_net"]
    (tmp_path / pn.path).parent.mkdir(parents=True)
    (tmp_path / pn.path).write_bytes(b"x")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert dl.download(tmp_path, "point_net") == {"point_net": tmp_path / pn.path}


def test_unknown_role(tmp_path):
    with pytest.raises(ValueError, match="no_such_role"):
        dl.download(tmp_path, ["no_such_role"])


def test_default_roles_skip_base_only():
    assert "unet_base" not in [f.role for f in dl._select(None)]
    assert "controlnet_base" not in [f.role for f in dl._select(None)]
    assert "point_net" in [f.role for f in dl._select(None)]


# --- (c) resume ----------------------------------------------------------------------------------------------------


def test_cut_transfer_is_resumed_with_range_in_the_same_call(hub, tmp_path):
    size, cut = 200_000, 50_000
    lf, data, f = _add(hub, "point_net", size, cut_at=cut, cut_times=1)
    calls = []
    out = dl.download(tmp_path, ["point_net"], progress=lambda *a: calls.append(a))

    assert out["point_net"].read_bytes() == data
    gets = hub.gets(f)
    assert len(gets) == 2
    assert gets[0].range is None and gets[0].status == 200 and gets[0].body_bytes == cut
    # It resumes from every byte that arrived, the part of a chunk in flight included.
    assert gets[1].range == f"bytes={cut}-" and gets[1].status == 206
    assert gets[1].body_bytes == size - cut
    done = [d for r, d, t in calls]
    assert done == sorted(done) and done[-1] == size
    assert _leftovers(tmp_path) == [] and hub.sleeps == [1]


def test_the_next_call_resumes_where_a_failed_one_stopped(hub, tmp_path):
    size, cut = 100_000, 30_000
    lf, data, f = _add(hub, "point_net", size, cut_at=cut)  # always cut at 30 000
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["point_net"])
    assert ei.value.reason == "incomplete"
    assert "resumes" in str(ei.value) and str(_part(tmp_path, lf)) in str(ei.value)
    gets = hub.gets(f)
    # 1 attempt + 5 resumes that made no progress, all but the first with a Range.
    assert len(gets) == 6 and gets[0].range is None
    assert all(g.range == f"bytes={cut}-" for g in gets[1:])
    assert not (tmp_path / lf.path).exists() and _only_in_partial_dir(tmp_path)
    assert _part(tmp_path, lf).read_bytes() == data[:cut]

    f.cut_at = None
    hub.requests.clear()
    calls = []
    out = dl.download(tmp_path, ["point_net"], progress=lambda *a: calls.append(a))
    assert out["point_net"].read_bytes() == data
    gets = hub.gets(f)
    assert len(gets) == 1 and gets[0].range == f"bytes={cut}-" and gets[0].body_bytes == size - cut
    assert [d for r, d, t in calls][1] == cut  # progress starts from the bytes already there
    assert _leftovers(tmp_path) == []


def test_a_killed_process_is_resumed_by_the_next_run(hub, tmp_path):
    """A real interruption: the download runs in a child process that is SIGKILLed part-way."""
    import signal
    import time

    size = 40 * 65536
    lf, data, f = _add(hub, "controlnet", size, throttle_s=0.02)  # ~1 s for the whole file
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from mn_core import download as dl; "
            "dl.download(sys.argv[2], ['controlnet'], endpoint=sys.argv[3])")
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    child = subprocess.Popen([sys.executable, "-c", code, str(REPO_ROOT), str(tmp_path), hub.endpoint], env=env)
    part = _part(tmp_path, lf)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (part.is_file() and part.stat().st_size >= 10 * 65536):
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    had = part.stat().st_size
    assert 10 * 65536 <= had < size and not (tmp_path / lf.path).exists()
    assert part.read_bytes() == data[:had]

    f.throttle_s = 0.0
    hub.requests.clear()
    out = dl.download(tmp_path, ["controlnet"])
    assert out["controlnet"].read_bytes() == data
    gets = hub.gets(f)
    assert len(gets) == 1 and gets[0].range == f"bytes={had}-" and gets[0].body_bytes == size - had
    assert _leftovers(tmp_path) == []


def test_a_file_changed_on_the_hub_is_not_resumed(hub, tmp_path):
    lf, data, f = _add(hub, "point_net", 50_000, cut_at=20_000)
    with pytest.raises(dl.DownloadError):
        dl.download(tmp_path, ["point_net"])
    new = _bytes(50_000, "a new upload")
    hub.add(lf.repo, lf.repo_file, new)  # same name and size, another etag
    hub.requests.clear()
    assert dl.download(tmp_path, ["point_net"])["point_net"].read_bytes() == new
    assert [g.range for g in hub.gets(hub.files[(lf.repo, lf.repo_file)])] == [None]


def test_a_server_that_ignores_range_sends_the_whole_file_again(hub, tmp_path):
    size, cut = 60_000, 25_000
    lf, data, f = _add(hub, "point_net", size, cut_at=cut, cut_times=1, ignore_range=True)
    calls = []
    assert dl.download(tmp_path, ["point_net"], progress=lambda *a: calls.append(a))["point_net"].read_bytes() == data
    gets = hub.gets(f)
    assert [g.range for g in gets] == [None, f"bytes={cut}-"] and [g.status for g in gets] == [200, 200]
    assert 0 in [d for r, d, t in calls][2:]  # the count went back to 0 once


def test_corrupted_bytes_are_caught_by_the_checksum_and_dropped(hub, tmp_path):
    lf, data, f = _add(hub, "annotator", 70_000, corrupt_at=12_345)
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["annotator"])
    err = ei.value
    assert err.reason == "checksum" and hashlib.sha256(data).hexdigest() in str(err)
    _assert_helpful(err, lf, tmp_path, hub.endpoint)
    assert _leftovers(tmp_path) == []  # complete but wrong: not kept for a resume
    f.corrupt_at = None
    assert dl.download(tmp_path, ["annotator"])["annotator"].read_bytes() == data


def test_a_short_body_is_resumed_and_a_small_git_file_is_checked_too(hub, tmp_path):
    lf, data, f = _add(hub, "unet_config", 5000, corrupt_at=100)  # a json file: etag = git blob sha1
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["unet_config"])
    assert ei.value.reason == "checksum" and "git-sha1" in str(ei.value)


def test_a_full_disk_during_the_download_keeps_the_bytes_and_the_next_run_resumes(hub, tmp_path, monkeypatch):
    import errno

    size = 30 * CHUNK
    lf, data, f = _add(hub, "point_net", size)
    real_write, written = dl._write, []

    def full_after_ten_chunks(out, chunk):
        if sum(written) + len(chunk) > 10 * CHUNK:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(out, chunk)
        written.append(len(chunk))

    monkeypatch.setattr(dl, "_write", full_after_ten_chunks)
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["point_net"])
    err = ei.value
    assert err.reason == "disk" and "No space left on device" in str(err) and "free some disk space" in str(err)
    _assert_helpful(err, lf, tmp_path, hub.endpoint)
    assert len(hub.gets(f)) == 1  # a full disk is not retried
    assert _part(tmp_path, lf).stat().st_size == 10 * CHUNK

    monkeypatch.setattr(dl, "_write", real_write)  # space freed
    hub.requests.clear()
    assert dl.download(tmp_path, ["point_net"])["point_net"].read_bytes() == data
    assert [g.range for g in hub.gets(f)] == [f"bytes={10 * CHUNK}-"]


def test_not_enough_free_space_is_said_before_the_transfer(hub, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    lf, data, f = _add(hub, "vae", 80_000)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 5000, 5000))
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["vae"])
    assert ei.value.reason == "disk" and "80.0 KB still to download but only 5.0 KB free" in str(ei.value)
    assert hub.gets(f) == []


def test_verify_and_check_sizes_find_damaged_files(hub, tmp_path):
    lf, data, _ = _add(hub, "point_net", 40_000)
    cfg, cfg_data, _ = _add(hub, "unet_config", 400)
    dl.download(tmp_path, ["point_net", "unet_config"])
    dest = tmp_path / lf.path

    flipped = bytearray(data)
    flipped[777] ^= 0x10
    dest.write_bytes(bytes(flipped))  # same size: only the checksum sees it
    assert dl.check_sizes(tmp_path) == []
    hub.requests.clear()
    report = dl.verify(tmp_path, ["point_net", "unet_config"])
    assert report["unet_config"] == "ok" and "sha256 differs" in report["point_net"] and str(dest) in report["point_net"]
    assert hub.requests == []  # checked against the record, no network

    dest.write_bytes(data[:1000])  # cut short by a copy
    (problem,) = dl.check_sizes(tmp_path)
    assert str(dest) in problem and "1000 bytes" in problem and "40000" in problem and "download" in problem

    dest.write_bytes(data)
    assert dl.check_sizes(tmp_path) == [] and dl.verify(tmp_path, ["point_net"]) == {"point_net": "ok"}


def test_verify_asks_the_hub_about_files_copied_by_hand(hub, tmp_path):
    lf, data, _ = _add(hub, "annotator", 3000)
    dest = tmp_path / lf.path
    dest.parent.mkdir(parents=True)
    dest.write_bytes(data[:-1] + b"?")
    assert "differs" in dl.verify(tmp_path, ["annotator"])["annotator"]
    assert dl.recorded(tmp_path) == {}
    dest.write_bytes(data)
    assert dl.verify(tmp_path, ["annotator"]) == {"annotator": "ok"}
    assert dl.recorded(tmp_path)[lf.path]["sha256"] == hashlib.sha256(data).hexdigest()


# --- (d) failures ----------------------------------------------------------------------------------------------


def _assert_helpful(err: dl.DownloadError, lf, root: Path, endpoint: str):
    msg = str(err)
    assert isinstance(err, RuntimeError)
    assert err.role == lf.role and err.repo == lf.repo and err.filename == lf.repo_file
    for needle in (lf.role, lf.repo, lf.repo_file, endpoint, f"{endpoint}/{lf.repo}/resolve/main/{lf.repo_file}",
                   str(root / lf.path), "Cause:", "download"):
        assert needle in msg, (needle, msg)
    assert not (root / lf.path).exists()
    assert _only_in_partial_dir(root)


def test_404_file_not_on_hub(hub, tmp_path):
    lf = BY_ROLE["point_net"]
    hub.add(lf.repo, "something_else.pth", b"x")  # repo exists, file does not
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["point_net"])
    assert ei.value.reason == "not_found"
    assert "404" in str(ei.value)
    _assert_helpful(ei.value, lf, tmp_path, hub.endpoint)


def test_404_without_hub_error_headers(hub, tmp_path):
    """A mirror that answers a bare 404: huggingface_hub reports a connection problem; we still say 404."""
    lf, _, f = _add(hub, "point_net", 100, fail_status=404, hub_error_headers=False)
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["point_net"])
    assert ei.value.reason == "not_found" and "404" in str(ei.value)
    _assert_helpful(ei.value, lf, tmp_path, hub.endpoint)


def test_unknown_repo(hub, tmp_path):
    lf = BY_ROLE["point_net"]  # nothing added: the fake hub answers 401 RepoNotFound like the real one
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["point_net"])
    assert ei.value.reason == "repo_not_found"
    _assert_helpful(ei.value, lf, tmp_path, hub.endpoint)


def test_server_error_after_retries(hub, tmp_path):
    lf, _, f = _add(hub, "point_net", 100, fail_status=500)
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["point_net"])
    assert ei.value.reason == "http" and "500" in str(ei.value)
    assert len(hub.requests_for(f, "HEAD")) == 6 and hub.sleeps == [1, 2, 4, 8, 8]  # 1 try + 5 with back-off
    _assert_helpful(ei.value, lf, tmp_path, hub.endpoint)


def test_transient_server_error_is_retried(hub, tmp_path):
    lf, data, f = _add(hub, "point_net", 1000, fail_status=503, fail_times=2)
    out = dl.download(tmp_path, ["point_net"])
    assert out["point_net"].read_bytes() == data


def test_connection_refused(hub, tmp_path):
    lf = BY_ROLE["annotator"]
    endpoint = closed_port_endpoint()
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["annotator"], endpoint=endpoint)
    assert ei.value.reason == "network" and ei.value.endpoint == endpoint
    assert "ConnectError" in str(ei.value)
    assert hub.sleeps == [1, 2, 4, 8, 8]  # the HEAD back-off (~23 s for real), skipped here
    _assert_helpful(ei.value, lf, tmp_path, endpoint)


def test_always_cut_transfer(hub, tmp_path):
    lf, _, f = _add(hub, "vae", 50_000, cut_at=0)  # headers, then the connection drops, every time
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["vae"])
    assert ei.value.reason == "incomplete"
    assert "stopped at byte 0 of 50000 and 5 resumes" in str(ei.value)
    assert len(hub.gets(f)) == 6 and hub.sleeps == [1] * 5  # 5 resumes, 1 s apart for real
    _assert_helpful(ei.value, lf, tmp_path, hub.endpoint)


def test_first_failure_stops_but_keeps_finished_files(hub, tmp_path):
    lf_ok, data_ok, _ = _add(hub, "unet_config", 10)
    lf_bad = BY_ROLE["vae_config"]  # repo exists (unet_config), file missing
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["unet_config", "vae_config"])
    assert ei.value.role == "vae_config"
    assert (tmp_path / lf_ok.path).read_bytes() == data_ok
    assert not (tmp_path / lf_bad.path).exists()


@pytest.mark.parametrize("how", ["env", "constants"])
def test_offline_mode(hub, tmp_path, monkeypatch, how):
    from huggingface_hub import constants

    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    lf, _, _ = _add(hub, "point_net", 100)
    _add(hub, "controlnet", 100)
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["point_net", "controlnet"])
    err = ei.value
    assert err.reason == "offline" and err.role == "point_net"
    msg = str(err)
    assert "HF_HUB_OFFLINE" in msg
    assert str(tmp_path / lf.path) in msg and str(tmp_path / BY_ROLE["controlnet"].path) in msg
    assert hub.requests == []


def test_offline_error_raised_by_huggingface_hub_is_wrapped(hub, tmp_path, monkeypatch):
    """If our own check is bypassed, the hub client's OfflineModeIsEnabled still becomes a clear DownloadError."""
    from huggingface_hub import constants

    monkeypatch.setattr(dl, "offline_mode", lambda: False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    lf, _, _ = _add(hub, "point_net", 100)
    with pytest.raises(dl.DownloadError) as ei:
        dl.download(tmp_path, ["point_net"])
    assert ei.value.reason == "offline" and "HF_HUB_OFFLINE" in str(ei.value)
    assert hub.requests == []


# --- (e) progress --------------------------------------------------------------------------------------------------


def test_progress_reports_growing_byte_counts(hub, tmp_path):
    size = 10 * CHUNK + 123
    _add(hub, "unet_config", 50)
    _add(hub, "controlnet", size)
    calls = []
    dl.download(tmp_path, ["unet_config", "controlnet"], progress=lambda *a: calls.append(a))

    roles_in_order = [r for i, (r, _, _) in enumerate(calls) if i == 0 or calls[i - 1][0] != r]
    assert roles_in_order == ["unet_config", "controlnet"]  # one file after the other
    cn = [(d, t) for r, d, t in calls if r == "controlnet"]
    assert cn[0] == (0, BY_ROLE["controlnet"].approx_bytes)  # start: layout's approximate size
    byte_level = cn[1:]
    assert len(byte_level) >= 10  # one per chunk written
    assert all(t == size for _, t in byte_level)
    done = [d for d, _ in byte_level]
    assert done == sorted(done) and done[0] == 0 and done[-1] == size
    assert [(d, t) for r, d, t in calls if r == "unet_config"][-1] == (50, 50)


def test_progress_exception_cancels_cleanly(hub, tmp_path):
    class Cancelled(Exception):
        pass

    lf, _, _ = _add(hub, "point_net", 20 * CHUNK)

    def cb(role, done, total):
        if done >= 5 * CHUNK:
            raise Cancelled()

    with pytest.raises(Cancelled):
        dl.download(tmp_path, ["point_net"], progress=cb)
    assert not (tmp_path / lf.path).exists() and _only_in_partial_dir(tmp_path)
    assert _part(tmp_path, lf).stat().st_size == 5 * CHUNK  # kept: the next call goes on from there


# --- import hygiene ------------------------------------------------------------------------------------------------


def test_import_is_light():
    # What importing mn_core.download adds on top of its package (whose __init__ may import what it likes).
    code = (
        "import sys, mn_core; before = set(sys.modules); import mn_core.download; "
        "new = set(sys.modules) - before; "
        "heavy = [m for m in ('huggingface_hub', 'httpx2', 'torch', 'diffusers', 'transformers', 'tqdm') "
        "if m in new]; "
        "assert not heavy, heavy"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, env=env)
