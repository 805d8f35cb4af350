"""A shot spread over a Ray cluster (the optional extra ``cluster``: ``pip install ray``).

Each Ray actor loads the models and encodes the references once, then colours units of work (:mod:`mn_core.runner`:
a batch of independent frames, or a chunk of a previous-frame shot) sent to it with their line art. The driver (the
``sequence`` command) keeps the output folder: it writes every returned frame atomically and records it in the
manifest, exactly once. When an actor dies (its process killed, its machine lost), its unit goes back to the queue
and a replacement actor is started; a unit that comes back twice is written once. ``local`` starts a Ray instance
on this machine; an address joins an existing cluster, whose nodes need this package installed.
"""

from __future__ import annotations

import io
import os
import socket
import time
from collections import deque
from pathlib import Path

from PIL import Image

from .runner import Run, Unit

MAX_REPLACEMENTS = 8  # actors started to replace dead ones, in all, before the run gives up (and can be resumed)
CONNECT_TIMEOUT_S = 15.0  # how long an address may stay silent before --ray ADDRESS gives up (Ray itself: minutes)
DEFAULT_PORTS = {"": 6379, "ray://": 10001}  # the head's GCS port; Ray Client's port


class ClusterError(ValueError):
    """Ray is missing or the cluster cannot run the shot; the message says what to do."""


def ray_available():
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install ray "
                           "(or pip install \"comfyui-manganinja[cluster]\")") from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds, with the address named, when nothing answers at ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``); Ray would retry for minutes. ``local`` and ``auto`` are Ray's own business."""
    if address in ("local", "auto"):
        return
    scheme = "ray://" if address.startswith("ray://") else ""
    rest = address[len(scheme):]
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        host, port_text = rest, str(DEFAULT_PORTS[scheme])
    try:
        port = int(port_text)
        if not host or not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ClusterError(f"--ray {address}: expected local, auto, HOST:PORT or ray://HOST:PORT (the head node's "
                           f"address, as `ray start --head` prints it)") from None
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), port), timeout=min(5.0, timeout)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ClusterError(f"--ray {address}: nothing answers at {host}:{port} ({e.strerror or e}); start "
                                   f"the head with `ray start --head --port {port}` or check the address") from None
            time.sleep(0.5)


def _image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


class FrameWorker:
    """One Ray actor: the models loaded once, the references encoded once."""

    def __init__(self, models: str, load: dict, references: list[bytes], encode: dict, options: dict,
                 threads: int | None = None):
        import torch

        from .pipeline import MangaNinja

        if threads:  # the driver's CPU thread count: float sums in the same order, so a frame comes out the same
            torch.set_num_threads(threads)
        self.mn = MangaNinja.from_folder(models, **load)
        self.ref = self.mn.encode_references([_image(r) for r in references], **encode)
        self.options = options

    def pid(self) -> int:
        return os.getpid()

    def colour(self, unit: Unit, frames: dict[int, bytes], previous: bytes | None) -> list[tuple[int, bytes]]:
        from .runner import colour_unit

        prev = _image(previous) if previous is not None else None
        return list(colour_unit(self.mn, self.ref, unit, lambda i: _image(frames[i]), prev, self.options))


def _lost(ray) -> tuple:
    """The exceptions that mean the actor (not the work) failed."""
    names = ("RayActorError", "WorkerCrashedError", "ActorUnavailableError", "ActorDiedError", "NodeDiedError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))


def run_on_ray(address: str, args, run: Run, units: list[Unit], source, options: dict, *, workers: int | None = None,
               on_frame=None, stop=None) -> None:
    """Colour ``units`` on Ray actors, writing each frame into ``run`` as it comes back."""
    ray = ray_available()
    started = not ray.is_initialized()
    if started:
        root = str(Path(__file__).resolve().parents[1])
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}}
        try:
            if address == "local":
                ray.init(address="local", num_cpus=max(2, workers or 2), include_dashboard=False,
                         runtime_env=env, log_to_driver=False)
            else:
                check_reachable(address)
                ray.init(address=address, runtime_env=env, log_to_driver=False)
        except ClusterError:
            raise
        except Exception as e:  # noqa: BLE001  (Ray raises ConnectionError, RuntimeError, ...)
            raise ClusterError(f"--ray {address}: cannot start or join Ray ({' '.join(str(e).split())})") from None
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = workers or gpus or 2
        actor_cls = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1)(FrameWorker)
        load = {"device": args.device, "precision": args.precision, "sequential_rows": args.low_memory}
        encode = {"mode": args.multi_reference, "size": args.size, "fit": args.fit, "seed": args.seed}
        refs = [Path(p).read_bytes() for p in args.reference]
        import torch

        threads = None if gpus else torch.get_num_threads()
        make = (lambda: actor_cls.remote(str(args.models.resolve()), load, refs, encode, options, threads))
        idle = [make() for _ in range(count)]
        queue: deque[Unit] = deque(units)
        running: dict = {}  # future -> (actor, unit)
        replaced = 0
        while queue or running:
            while queue and idle and not (stop and stop()):
                actor, unit = idle.pop(), queue.popleft()
                previous = run.out.joinpath(run.names[unit.previous_index]).read_bytes() \
                    if unit.previous_index is not None else None
                frames = {i: source.data(i) for i in unit.indices}
                running[actor.colour.remote(unit, frames, previous)] = (actor, unit)
            if not running:
                break  # stop requested: nothing in flight
            done, _ = ray.wait(list(running), num_returns=1)
            actor, unit = running.pop(done[0])
            try:
                results = ray.get(done[0])
            except _lost(ray) as e:
                if replaced >= MAX_REPLACEMENTS:
                    raise ClusterError(f"Ray workers keep dying ({type(e).__name__}); the finished frames are "
                                       f"kept: run the same command again to resume") from None
                replaced += 1
                queue.appendleft(unit)  # another actor does it
                idle.append(make())
                continue
            for index, data in results:
                if not run.done(index):  # a unit done twice is written once
                    run.record(index, data)
                    if on_frame:
                        on_frame(index)
            idle.append(actor)
    finally:
        if started:
            ray.shutdown()
