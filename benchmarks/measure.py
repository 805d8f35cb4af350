"""Measuring: resident memory (VmHWM, a background sampler), CUDA peaks per phase, a quiet machine, and the
pipeline observers that mark steps and break a step's time down (mn_core's observer hook; nothing is patched)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import torch

from mn_core.observers import Observer

def _proc_status() -> dict[str, int]:
    """Memory fields of /proc/self/status in bytes (Linux); empty elsewhere."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs), so that what happened before
    (writing random weights, imports) does not count as the benchmark's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except Exception:  # noqa: BLE001
            return 0


def peak_rss() -> int:
    """Peak RSS of the process so far (VmHWM; ru_maxrss where /proc is absent)."""
    hwm = _proc_status().get("VmHWM")
    if hwm:
        return hwm
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024
    except Exception:  # noqa: BLE001
        return 0


def _system_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


class RssSampler:
    """Samples the process RSS (and the CPU time used by other processes) in a background thread.

    :meth:`peak` gives the maximum RSS between two times; :meth:`other_cpu` how many cores other processes kept
    busy on average meanwhile (a busy machine skews CPU timings).
    """

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.cpu: list[tuple[float, float, float]] = []  # (time, system busy s, own process CPU s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self):
        n = 0
        while not self._stop.is_set():
            now = time.perf_counter()
            self.samples.append((now, current_rss()))
            if n % 10 == 0:
                self._cpu_sample()
            n += 1
            self._stop.wait(self.interval)

    def _cpu_sample(self):
        busy = _system_busy_seconds()
        if busy is not None:
            self.cpu.append((time.perf_counter(), busy, time.process_time()))

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._cpu_sample()

    def peak(self, t0: float, t1: float) -> int:
        values = [rss for t, rss in self.samples if t0 <= t <= t1]
        return max(values, default=current_rss())

    def other_cpu(self, t0: float, t1: float) -> float | None:
        """Average number of cores other processes kept busy between t0 and t1 (about 0.1 s resolution)."""
        inside = [c for c in self.cpu if t0 - 0.06 <= c[0] <= t1 + 0.06]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.05:
            return None
        (ta, ba, oa), (tb, bb, ob) = inside[0], inside[-1]
        return max(0.0, ((bb - ba) - (ob - oa)) / (tb - ta))

    def write_csv(self, path: Path, t_origin: float) -> None:
        with open(path, "w") as f:
            f.write("seconds,rss_bytes\n")
            for t, rss in self.samples:
                f.write(f"{t - t_origin:.3f},{rss}\n")


class Memory:
    """Per-phase peaks: RSS (always) and, on CUDA, max_memory_allocated / max_memory_reserved (reset per phase)."""

    def __init__(self, device: torch.device, sampler: RssSampler):
        self.device = device
        self.sampler = sampler
        self.cuda = device.type == "cuda"
        self.phases: dict[str, dict] = {}
        self.cuda_peak_overall = 0

    def sync(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()
        return time.perf_counter()

    def reset_cuda(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def cuda_peaks(self) -> dict:
        if not self.cuda:
            return {}
        alloc = torch.cuda.max_memory_allocated(self.device)
        self.cuda_peak_overall = max(self.cuda_peak_overall, alloc)
        return {"cuda_max_allocated_bytes": alloc,
                "cuda_max_reserved_bytes": torch.cuda.max_memory_reserved(self.device)}

    def record(self, name: str, t0: float, t1: float, cuda: dict | None = None) -> None:
        entry = {"peak_rss_bytes": self.sampler.peak(t0, t1), "seconds": t1 - t0,
                 "other_cpu_cores": self.sampler.other_cpu(t0, t1)}
        entry.update(cuda or {})
        if name in self.phases:  # the same phase for several frames: keep the worst
            old = self.phases[name]
            entry = {k: (old["seconds"] + v if k == "seconds" else
                         v if old.get(k) is None else old[k] if v is None else max(old[k], v))
                     for k, v in entry.items()}
        self.phases[name] = entry

    @contextlib.contextmanager
    def phase(self, name: str):
        self.reset_cuda()
        t0 = self.sync()
        yield
        t1 = self.sync()
        self.record(name, t0, t1, self.cuda_peaks())


def wait_until_quiet(limit: float, threshold: float = 0.15, quiet_for: float = 6.0) -> float | None:
    """Wait (up to ``limit`` seconds) until other processes use under ``threshold`` cores for ``quiet_for``
    seconds; returns the seconds waited, or None if the machine stayed busy."""
    t0 = time.perf_counter()
    quiet_since = None
    while time.perf_counter() - t0 < limit:
        a, ta = _system_busy_seconds(), time.perf_counter()
        if a is None:
            return 0.0
        time.sleep(1.0)
        busy = (_system_busy_seconds() - a) / (time.perf_counter() - ta)
        now = time.perf_counter()
        if busy < threshold:
            quiet_since = quiet_since or now - 1.0
            if now - quiet_since >= quiet_for:
                return now - t0
        else:
            quiet_since = None
    return None




# --------------------------------------------------------------------------------------------------------------
# Observers of the pipeline


class StepMarks(Observer):
    """The wall-clock time after each step (the pipeline has synchronised just before: a Timings observer asks
    for step timings); on CUDA the peaks of prepare + steps are taken at the last step and reset for the decode."""

    def __init__(self, memory: Memory):
        self.memory = memory
        self.times: list[float] = []
        self.cuda: list[dict] = []

    def on_step_end(self, step, steps, latents):
        self.times.append(time.perf_counter())
        if step == steps and self.memory.cuda:
            self.cuda.append(self.memory.cuda_peaks())
            self.memory.reset_cuda()


class Breakdown(Observer):
    """Synchronised timers of the networks: the pipeline's ``controlnet``, ``unet`` and ``reference_unet``
    sections, and torch forward hooks (attached as each phase's networks are placed) on the reference
    self-attention (attn1), cross-attention (attn2) and feed-forward layers inside the UNet, PointNet, the
    ControlNet conditioning embedding, CLIP, the VAE encoder/decoder and the annotator. Adds a little overhead."""

    SECTIONS = ("controlnet", "unet", "reference_unet")
    # (network, sub-module path or "", key)
    WHOLE = (("clip_vision", "", "clip_vision"), ("vae", "encoder", "vae_encoder"), ("vae", "decoder", "vae_decoder"),
             ("point_net", "", "point_net"), ("controlnet", "controlnet_cond_embedding", "controlnet_cond_embedding"),
             ("annotator", "", "annotator"))

    def __init__(self, memory: Memory):
        self.memory = memory
        self.wants_timings = frozenset(self.SECTIONS)
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._handles = []
        self._hooked: set[int] = set()

    def _add(self, key, seconds):
        self.totals[key] = self.totals.get(key, 0.0) + seconds
        self.counts[key] = self.counts.get(key, 0) + 1

    def on_section(self, name, seconds):
        self._add(name, seconds)

    def _hook(self, module, key):
        if id(module) in self._hooked:
            return
        self._hooked.add(id(module))
        start = []

        def pre(_m, _args):
            start.append(self.memory.sync())

        def post(_m, _args, _out):
            self._add(key, self.memory.sync() - start.pop())

        self._handles.append(module.register_forward_pre_hook(pre))
        self._handles.append(module.register_forward_hook(post))

    def on_phase(self, phase, networks):
        from mn_core.attention import transformer_blocks

        for name, attr, key in self.WHOLE:
            m = networks.get(name)
            if m is not None:
                self._hook(m.get_submodule(attr) if attr else m, key)
        unet = networks.get("denoising_unet")
        if unet is not None:
            for block in transformer_blocks(unet).values():
                self._hook(block.attn1, "unet_attn1_reference")
                if block.attn2 is not None:
                    self._hook(block.attn2, "unet_attn2_cross")
                self._hook(block.ff, "unet_feed_forward")

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._hooked.clear()
