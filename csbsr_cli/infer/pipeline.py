"""The `segment` pipeline: decode ahead, run batched tiles, stitch strips, encode outputs behind.

Three threads and two bounded queues: a reader decodes the next frame while the model runs (queue of one
frame), the main thread tiles, runs the model on `--batch` tiles at a time and stitches, and a writer
encodes the finished strips (PNG/TIFF, crack measurement, overlay) while the model works on the next
tiles. Memory is bounded by a frame, one row of windows and a few strips in flight, never by the x4 SR
frame. A frame that fails (unreadable, or an error while processing or writing) is recorded and the
batch goes on; Ctrl-C removes every partial file before it propagates.
"""

from __future__ import annotations

import errno
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from ..errors import CsbsrError, DeviceError, OutputError
from ..utils.atomic import write_text_atomic
from .device import versions
from .gsd import GsdResolver, gsd_report
from .inputs import Frame, Source, iter_frames
from .outputs import FrameWriter, OutputOptions, completed_record, write_coco, write_cracks, write_summary
from .runner import Runner
from .tiling import (
    Stitcher,
    StitchMode,
    StripCallback,
    TilePlan,
    iter_batches,
    make_plan,
    pad_frame,
)
from .video import write_videos

STOP_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})  # the folder, not the frame, is at fault
READ_AHEAD = 1  # decoded frames waiting for the model
WRITE_QUEUE = 4  # strips waiting for the writer


@dataclass(frozen=True)
class Job:
    """Everything that decides a frame's outputs: its settings are the resume fingerprint."""

    model: str
    weights: str
    backend: str
    precision: str
    scale: int
    divisor: int
    tile: int
    overlap: int
    mode: StitchMode
    options: OutputOptions

    def settings(self) -> dict[str, Any]:
        return asdict(self)


class Hooks:
    """Progress callbacks (no-ops here; the CLI draws a rich progress bar). Called from several threads."""

    def frame_started(self, key: str, tiles: int) -> None: ...

    def tiles_done(self, count: int) -> None: ...

    def frame_done(self, record: Mapping[str, Any]) -> None: ...


@dataclass
class Timings:
    frames: int = 0
    tiles: int = 0
    model_s: float = 0.0  # inside the runner
    tiling_s: float = 0.0  # cutting tiles and stitching: the tiler's own overhead
    read_wait_s: float = 0.0  # main thread waiting for a decoded frame
    write_wait_s: float = 0.0  # main thread waiting for room in the writer queue
    wall_s: float = 0.0


@dataclass
class RunResult:
    records: list[dict[str, Any]] = field(
        default_factory=list
    )  # one per frame: ok (new or resumed) or failed
    processed: int = 0
    resumed: int = 0
    timings: Timings = field(default_factory=Timings)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]


def failure_record(
    key: str, source: Path | str, error: str, video_frame: int | None = None
) -> dict[str, Any]:
    return {
        "frame": key,
        "source": str(source),
        "video_frame": video_frame,
        "status": "failed",
        "error": error,
    }


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, CsbsrError) else f"{type(exc).__name__}: {exc}"


_END = object()


class _Reader:
    """Decode frames in a background thread, at most READ_AHEAD ahead of the model."""

    def __init__(self, frames: Iterator[Frame]) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(frames,), name="reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, frames: Iterator[Frame]) -> None:
        try:
            for frame in frames:
                if not self._put(frame):
                    return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            self._put(exc)
        self._put(_END)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _Writer:
    """Encode strips and finish frames in a background thread; failures become failed records."""

    def __init__(
        self, out_dir: Path, options: OutputOptions, scale: int, done: Callable[[dict], None]
    ) -> None:
        self.out_dir, self.options, self.scale, self.done = out_dir, options, scale, done
        self._queue: queue.Queue[tuple | None] = queue.Queue(maxsize=WRITE_QUEUE)
        self._abort = threading.Event()
        self._open: dict[str, tuple[FrameWriter | None, dict[str, Any]]] = {}
        self._reported: set[str] = set()
        self.stopped: OutputError | None = None  # the output folder cannot take more files
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()
        self.wait_s = 0.0

    def put(self, message: tuple) -> None:
        t0 = time.perf_counter()
        while self._thread.is_alive():
            try:
                self._queue.put(message, timeout=0.1)
                break
            except queue.Full:
                continue
        self.wait_s += time.perf_counter() - t0

    def _run(self) -> None:
        while not self._abort.is_set():
            try:
                message = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if message is None:
                break
            op, key, *args = message
            try:
                self._handle(op, key, *args)
            except OSError as exc:
                self._fail(key, {"frame": key, "error": _error_text(exc)})
                if exc.errno in STOP_ERRNOS:  # every later frame would fail the same way: stop the batch
                    self.stopped = OutputError(
                        f"{exc.strerror} while writing frame {key!r}: the batch stopped; make room, then "
                        "re-run with --resume",
                        exc.filename or self.out_dir,
                    )
                    break
            except Exception as exc:  # noqa: BLE001 - one frame's failure must not stop the batch
                self._fail(key, {"frame": key, "error": _error_text(exc)})
        for key in list(self._open):
            self._discard(key)

    def _handle(self, op: str, key: str, *args: Any) -> None:
        if op == "begin":
            image, valid, meta = args
            self._open[key] = (None, meta)
            self._open[key] = (FrameWriter(self.out_dir, key, self.options, image, self.scale, valid), meta)
        elif op == "abort":
            self._fail(key, *args)
        elif key in self._open:  # else the frame already failed here: drop its remaining strips
            writer, meta = self._open[key]
            assert writer is not None
            if op == "strip":
                writer.write(*args)
            else:  # finish
                kernel, extra = args
                record = writer.finish(kernel, {**meta, **extra})  # on failure, _fail aborts it
                del self._open[key]
                self.done(record)

    def _discard(self, key: str) -> None:
        writer, _ = self._open.pop(key, (None, {}))
        if writer is not None:
            writer.abort()

    def _fail(self, key: str, failure: dict[str, Any]) -> None:
        """Report a frame failed once, with what is known about it, and remove its part files."""
        if key in self._reported:
            return
        self._reported.add(key)
        meta = self._open.get(key, (None, {}))[1]
        self._discard(key)
        self.done({**meta, **failure, "status": "failed"})

    def close(self) -> None:
        """Finish everything queued, then stop."""
        self.put(None)
        self._thread.join()

    def abort(self) -> None:
        """Stop now and remove the part files of unfinished frames (Ctrl-C)."""
        self._abort.set()
        self._thread.join()


@dataclass
class TiledRun:
    kernel: np.ndarray  # mean of the tiles' kernel estimates, (k, k)
    model_s: float
    tiling_s: float  # cutting and stitching, including time spent in `on_strip`


def run_tiled(
    runner: Runner,
    image: np.ndarray,
    plan: TilePlan,
    batch: int,
    channels: Mapping[str, int],
    on_strip: StripCallback,
    on_tiles: Callable[[int], None] = lambda n: None,
) -> TiledRun:
    """Cut `image` (HxWx3 float32) into the plan's windows, run them `batch` at a time and stitch the
    outputs named in `channels` ("prob" and/or "sr"), handing finished SR-grid strips to `on_strip`."""
    frame = torch.from_numpy(pad_frame(image, plan)).permute(2, 0, 1)
    stitcher = Stitcher(plan, channels, on_strip)
    kernel_sum: Tensor | None = None
    tiling_s = model_s = 0.0
    t0 = time.perf_counter()
    for indices, tiles in iter_batches(frame, plan, batch):
        t1 = time.perf_counter()
        sr_t, prob_t, kernel = runner(tiles)
        t2 = time.perf_counter()
        sr, prob = sr_t.numpy(), prob_t.numpy()
        bad = ~np.isfinite(prob.sum(axis=(1, 2, 3)) + sr.sum(axis=(1, 2, 3)))  # one pass, unlike isfinite()
        if bad.any():  # never write NaN as a probability; the frame is reported as failed
            y, x = plan.window(indices[int(np.flatnonzero(bad)[0])])
            raise ValueError(
                f"the model returned NaN/inf for {int(bad.sum())} tile(s), first at LR ({x}, {y}); "
                "uniform (e.g. all-black) tiles can cause this"
            )
        for i, index in enumerate(indices):
            stitcher.add(index, {"prob": prob[i], "sr": sr[i]})
        kernel_sum = kernel.sum(0) if kernel_sum is None else kernel_sum + kernel.sum(0)
        t3 = time.perf_counter()
        tiling_s += (t1 - t0) + (t3 - t2)
        model_s += t2 - t1
        on_tiles(len(indices))
        t0 = time.perf_counter()
    assert kernel_sum is not None and stitcher.done
    return TiledRun((kernel_sum / plan.n_tiles)[0].numpy(), model_s, tiling_s)


def infer_image(runner: Runner, image: np.ndarray, plan: TilePlan, batch: int = 4) -> dict[str, np.ndarray]:
    """Whole-frame arrays {"prob": (1, H, W), "sr": (3, H, W), "kernel": (k, k)} (tests and benchmarks;
    `segment` streams the strips to its writers instead)."""
    strips: dict[str, list[np.ndarray]] = {"prob": [], "sr": []}

    def collect(y: int, arrays: dict[str, np.ndarray]) -> None:
        for name, arr in arrays.items():
            strips[name].append(arr)

    run = run_tiled(runner, image, plan, batch, {"prob": 1, "sr": 3}, collect)
    return {**{k: np.concatenate(v, axis=1) for k, v in strips.items()}, "kernel": run.kernel}


class FramePipeline:
    """Tile, run and stitch one decoded frame at a time; outputs go to the writer thread."""

    def __init__(
        self, runner: Runner, job: Job, batch: int, writer: _Writer, timings: Timings, hooks: Hooks,
        gsd: GsdResolver,
    ):  # fmt: skip
        self.runner, self.job, self.batch, self.writer, self.timings, self.hooks, self.gsd = (
            runner, job, batch, writer, timings, hooks, gsd,
        )  # fmt: skip

    def run(self, frame: Frame) -> None:
        assert frame.image is not None
        job, key = self.job, frame.key
        t_start = time.perf_counter()
        h, w = frame.image.shape[:2]
        gsd_mm, gsd_source = self.gsd(key, frame.source)
        plan = make_plan(
            h, w, tile=job.tile, overlap=job.overlap, scale=job.scale, mode=job.mode, divisor=job.divisor
        )
        meta = {
            "frame": key,
            "source": str(frame.source),
            "video_frame": frame.index,
            "time_s": frame.time_s,
            "fps": frame.fps,
            "input_size": [w, h],
            "gsd_mm": gsd_mm,
            "gsd_source": gsd_source,
            "scale": job.scale,
            "model": job.model,
            "weights": job.weights,
            "tiles": plan.n_tiles,
            "grid": list(plan.grid),
            "settings": job.settings(),
        }
        self.hooks.frame_started(key, plan.n_tiles)
        image_u8 = cv2.convertScaleAbs(frame.image, alpha=255.0)  # for the overlay; no float temporaries
        self.writer.put(("begin", key, image_u8, frame.valid, meta))
        channels = {"prob": 1, **({"sr": 3} if job.options.needs_sr else {})}
        wait0 = self.writer.wait_s
        run = run_tiled(
            self.runner, frame.image, plan, self.batch, channels,
            lambda y, strips: self.writer.put(("strip", key, y, strips)), self.hooks.tiles_done,
        )  # fmt: skip
        write_wait = self.writer.wait_s - wait0
        self.timings.tiling_s += run.tiling_s - write_wait  # waiting for the writer is not the tiler's cost
        self.timings.model_s += run.model_s
        self.timings.write_wait_s += write_wait
        self.timings.tiles += plan.n_tiles
        self.timings.frames += 1
        self.writer.put(("finish", key, run.kernel, {"seconds": round(time.perf_counter() - t_start, 3)}))


def segment(
    sources: Sequence[Source],
    out_dir: Path,
    runner: Runner,
    job: Job,
    *,
    batch: int = 4,
    every: int = 1,
    resume: bool = False,
    gsd_sidecar: Mapping[str, float] | None = None,
    run_info: Mapping[str, Any] | None = None,
    hooks: Hooks | None = None,
) -> RunResult:
    """Segment every frame of `sources` into `out_dir`; see the module and outputs docs for what is written.

    Failed frames are in the result (and summary.csv), never raised; a DeviceError (no memory even for one
    tile) and KeyboardInterrupt stop the run after removing partial files. `gsd_sidecar`: the sidecar's
    {frame: gsd_mm} that `job.options.gsd` fingerprints.
    """
    hooks = hooks or Hooks()
    out_dir.mkdir(parents=True, exist_ok=True)
    result = RunResult()
    lock = threading.Lock()
    settings = job.settings()
    gsd = GsdResolver(job.options.gsd, gsd_sidecar)

    def done(record: dict[str, Any]) -> None:
        with lock:
            result.records.append(record)
            if record.get("status") == "ok":
                result.processed += 1
        hooks.frame_done(record)

    def wanted(key: str) -> bool:
        record = completed_record(out_dir, key, job.options, settings) if resume else None
        if record is None:
            return True
        with lock:
            result.records.append(record)
            result.resumed += 1
        hooks.frame_done(record)
        return False

    run = {
        "command": "segment", "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings, "batch": batch, "every": every,
        "versions": versions(), **(run_info or {}),
    }  # fmt: skip
    write_text_atomic(
        out_dir / "run.json", json.dumps({**run, "status": "running"}, indent=1, default=str) + "\n"
    )
    t_start = time.perf_counter()
    writer = _Writer(out_dir, job.options, job.scale, done)
    reader = _Reader(iter_frames(sources, every, wanted))
    frames = FramePipeline(runner, job, batch, writer, result.timings, hooks, gsd)
    status = "interrupted"
    try:
        t0 = time.perf_counter()
        for frame in reader:
            result.timings.read_wait_s += time.perf_counter() - t0
            if frame.error is not None:
                done(failure_record(frame.key, frame.source, frame.error, frame.index))
            else:
                try:
                    frames.run(frame)
                except DeviceError:
                    raise
                except Exception as exc:  # noqa: BLE001 - reported at the end, the batch goes on
                    failure = failure_record(frame.key, frame.source, _error_text(exc), frame.index)
                    writer.put(("abort", frame.key, failure))
            if writer.stopped is not None:
                raise writer.stopped
            t0 = time.perf_counter()
        writer.close()
        if writer.stopped is not None:
            raise writer.stopped
        status = "finished"
    except BaseException:
        writer.abort()
        raise
    finally:
        reader.stop()
        result.timings.wall_s = time.perf_counter() - t_start
        result.warnings += getattr(runner, "warnings", [])
        mm = job.options.gsd.configured
        write_summary(out_dir / "summary.csv", result.records, job.scale, mm)
        write_cracks(out_dir / "cracks.csv", result.records, mm)
        if job.options.wants("coco"):
            write_coco(out_dir / "coco.json", result.records)
        if job.options.wants("video"):
            run["videos"] = write_videos(out_dir, result.records, every)
        counts = {
            "frames_ok": result.processed,
            "frames_resumed": result.resumed,
            "failed": len(result.failed),
        }
        run.update(status=status, finished=datetime.now(timezone.utc).isoformat(timespec="seconds"), **counts)
        run["timings"] = asdict(result.timings)
        run["gsd"] = gsd_report(result.records)
        if unused := gsd.unused(result.records):
            result.warnings.append(
                f"{len(unused)} GSD sidecar row(s) match no frame of this run, e.g. {unused[0]!r}"
            )
        write_text_atomic(out_dir / "run.json", json.dumps(run, indent=1, default=str) + "\n")
    return result
