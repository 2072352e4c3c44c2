"""The one numpy <-> torch boundary: device, precision, memory format, batching.

Everything before the predictor is numpy (io, tiling, normalisation); the model
is pure torch.  The predictor chooses the device (CUDA when present), the
precision (bf16 autocast on CPUs with native bf16 and on GPUs that support it,
fp32 elsewhere), runs in inference mode with channels_last weights, splits
batches that run out of memory into halves instead of failing, and compiles the
model (``torch.compile`` with freezing) when the job is long enough for the
compilation to pay for itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from geosr.errors import OptionError, warn
from geosr.held import TORCH_THREADS, setting_held
from geosr.lanes import PEERS, alone
from geosr.resources import usable_cpus

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_MODES = ("auto", "on", "off")

COMPILE_COST_S = 60.0
"""Seconds a cold ``torch.compile`` of cnnrnn-fast takes on a 2-core CPU (41-60 s
measured; 12 s with a warm on-disk inductor cache, which ``auto`` does not count on)."""

COMPILE_SAVING = 0.1
"""Share of the eager forward time compilation saves, where ``auto`` considers it (a GPU):
1.12x for cnnrnn-fast in bf16 on a CPU (benchmark figure 10, 2026-11-30; the element-wise
GRU gates fuse), before the eager CPU path fused its convolutions; not measured on a GPU,
none having been lent to this project's machines."""


def cpu_has_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX-512 BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: str) -> torch.device:
    """Turn ``auto|cpu|cuda[:N]`` into a torch device, refusing CUDA when there is none."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    # Any other 'cuda...' was a CUDA device: 'cudax' was told that CUDA is missing, or, where
    # it is not, was a RuntimeError from torch.
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise OptionError(f"--device {device!r} is not known; use one of {', '.join(DEVICES)} (or cuda:N)")
    if not torch.cuda.is_available():
        raise OptionError(f"--device {device} was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into the fastest safe precision for ``device``; validate the rest."""
    if precision not in PRECISIONS:
        raise OptionError(f"--precision {precision!r} is not known; use one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision == "fp16":
        # fp16 convolutions on CPUs are emulated and far slower than fp32.
        raise OptionError("--precision fp16 is only for CUDA GPUs; on a CPU use bf16 or fp32")
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision == "bf16" and not cpu_has_bf16():
        # Autocast then emulates bf16: cnnrnn-fast ran 9x slower than fp32 on an AVX2 EPYC.
        warn(
            "--precision bf16: this CPU has no native bf16 (AVX-512 BF16 or AMX), so bf16 runs "
            "about 10x slower than fp32 here; use --precision auto (fp32 on this CPU)"
        )
    return precision


def resolve_compile(mode: str) -> str:
    """Validate ``--compile``: ``auto`` (when it pays off), ``on`` or ``off``."""
    if mode not in COMPILE_MODES:
        raise OptionError(f"--compile {mode!r} is not known; use one of {', '.join(COMPILE_MODES)}")
    return mode


def compile_pays_off(seconds_per_call: float, calls_left: int, device: torch.device) -> bool:
    """True when compiling now saves more time than it costs (see :data:`COMPILE_COST_S`).

    Never on a CPU: there the eager model's fused convolutions in two lanes
    (:mod:`geosr.models.fused`, :meth:`Predictor.lanes`) ran the 2048^2 x4 job's compute in
    2.13 s where the compiled model, in one lane, took 2.53 s (benchmark figure 10,
    2026-12-03: 0.84x), and ``auto`` compiled any job long enough, to run it slower.
    """
    if device.type == "cpu":
        return False
    return seconds_per_call * calls_left * COMPILE_SAVING > COMPILE_COST_S


_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}

OVERFLOW_CHECKED = ("fp16",)
"""Precisions whose model calls are checked for overflow, and computed again in float32 where
they overflowed: fp16 (the ``auto`` precision of GPUs without bf16, such as the T4 and V100)
stops at 65504, and an activation beyond it gives inf, then NaN outputs: holes in the image.
bf16 has float32's range.  The check runs on the device, before the outputs are copied back
(on a CPU it would cost 10 % of a bf16 call, for an overflow bf16 cannot have in practice)."""

CPU_BATCH = 2
"""Images per batch on a CPU (see :meth:`Predictor.batch_size_for`): two default
512 px tiles of one band, as many pixels as four 256 px ones.  A band-agnostic model
sees every band of a tile as an image, so the tiles of a many-band scene go one at a
time (:func:`cpu_batch`).  The model sees the batch in calls of
:data:`CPU_CALL_IMAGES` images."""

CPU_CALL_IMAGES = {"bf16": 1, "fp32": 2}
"""Images in one model call on a CPU, by precision (an odd one out of pairs joins the
last call).  A call holds the activations of all its images: cnnrnn-fast in bf16 on a
2048^2 x4 run peaked at 1.0 GB with pairs of 542 px images, 0.7 GB one at a time, for
4 % more compute (two calls of one image 0.554 s, one of two 0.532 s; 2-3 % end to
end).  In fp32 one-image calls are not taken (a lone image goes as its two halves:
:meth:`Predictor._predict_lone`): oneDNN's fp32 kernels for a single image round
differently with the image's size (1 unit in 12 of 312,000 output pixels between tile
sizes) and from the same image among others, where calls of two or more give the same
bits at any size, which the bit-identity of fp32 outputs across tile and batch sizes
rests on; bf16 calls of one image give the same bits at any tile size
(``tests/test_determinism.py``)."""


def _receptive_radius(model: torch.nn.Module, frames: int) -> int | None:
    """LR pixels on each side that an output pixel of ``model`` depends on with ``frames``
    frames, or None for a module that does not say (not a geosr network)."""
    from geosr.models.base import SRModel  # here: geosr.models imports this module

    return model.receptive_radius(frames) if isinstance(model, SRModel) else None


_SHARING = threading.Lock()
_calls_sharing = [0]  # model calls in flight that share torch's threads (shared_threads)


_RESHARE: contextvars.ContextVar[Callable[[], None]] = contextvars.ContextVar(
    "geosr_reshare", default=lambda: None
)
"""Takes the share of torch's threads that :func:`shared_threads` gives now: called before each
model call of a batch (:meth:`Predictor._predict_call`); outside :func:`shared_threads`, nothing."""


@contextlib.contextmanager
def shared_threads(expected: Callable[[], int] = alone) -> Iterator[None]:
    """Within: each model call takes an even share of torch's threads with the other calls in
    flight in the process, or with the ``expected()`` calls its job runs at once if more, set in
    its own thread, which has the caller's count back after.

    For calls that others run at once, each in a thread of its own: a run's lanes.  One call
    on all of the cores waits at every layer for its slowest thread, where two calls on one
    thread each do not wait for each other.  torch keeps a thread count per thread once that
    thread has used torch (OpenMP's), so a call's share is set in its own thread as it starts.
    From the calls in flight alone, the first lane's call, a few milliseconds ahead of the
    second, took every thread and kept them while the second took its share: one thread more
    than cores for the whole of both first calls.  ``expected`` counts the second before it
    starts.  The share is taken again before each model call of a batch (a batch is several:
    :data:`CPU_CALL_IMAGES`), so a call that is alone and expects no other (the end of a job,
    its peer done) takes every thread.
    """
    with setting_held(TORCH_THREADS, torch.get_num_threads, torch.set_num_threads) as caller_threads:
        with _SHARING:
            _calls_sharing[0] += 1

        def share() -> None:
            torch.set_num_threads(max(1, caller_threads // max(_calls_sharing[0], expected())))

        share()
        token = _RESHARE.set(share)
        try:
            yield
        finally:
            _RESHARE.reset(token)
            with _SHARING:
                _calls_sharing[0] -= 1
            torch.set_num_threads(caller_threads)  # this thread's own count (and new threads')


def cpu_batch(images_per_tile: int) -> int:
    """Tiles per batch on a CPU: :data:`CPU_BATCH` images, or one tile when it has more."""
    return max(1, CPU_BATCH // images_per_tile)


GPU_MEMORY_SHARE = 0.6
"""Share of a GPU's free memory a batch may fill (the rest: allocator slack, copies)."""

GPU_MAX_BATCH = 64
"""More tiles per call than this gains nothing on a GPU and delays the first write (a run in
several lanes shares it out: :meth:`Predictor.batch_size_for`)."""

GPU_LANES_MAX = 4
"""The most lanes a run on a GPU takes (:func:`gpu_lanes`)."""


def gpu_lanes(cpus: int) -> int:
    """Batches a run on a GPU computes at once, with ``cpus`` CPUs: one per 4 CPUs, 1 to
    :data:`GPU_LANES_MAX`.

    A batch is CPU work before and after its model call: normalising, the copies to and
    from the GPU, casting the float32 outputs into the output's dtype, writing them with
    their overview levels.  In one lane the GPU waits for all of it: figure 9 on an H200
    (16 CPUs, 2026-12-04) computed in bursts of about a second, one per batch of 64 tiles,
    every 4 s (benchmarks/gpu/RESULTS.md).  In lanes, each lane's CPU work overlaps the
    others' model calls, which the GPU runs one after another; each lane's batch gets its
    share of the GPU's memory.  A CPU per lane at least for that work and 3 for GDAL,
    reading and the writers' compression around them: one lane on 4 CPUs or fewer, as before.
    On the H200's 16 CPUs, 8 lanes (one per 2 CPUs) ran figure 9 in 69.2 s against 66.1 s
    in 4, with the CPUs 25-40 % busy: hence the cap.
    """
    return max(1, min(GPU_LANES_MAX, cpus // 4))


@dataclass
class Predictor:
    """Run a super-resolution model on numpy batches.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(B, T, C, h, w)`` to ``(B, C, s*h, s*w)``.
    device, precision : str
        See :func:`resolve_device` and :func:`resolve_precision`.
    compile : str
        ``off`` (eager), ``on`` (compile at the first batch) or ``auto``:
        compile after the first batch when :meth:`expect` announced enough
        batches for it to pay off (:func:`compile_pays_off`).  A compiled model
        has one fixed batch shape: smaller batches (the last one) are padded.
        Should compilation fail (no C++ compiler, say), the run goes on eager.
    """

    model: torch.nn.Module
    device: str = "auto"
    precision: str = "auto"
    compile: str = "off"
    _compiled: torch.nn.Module | None = field(default=None, init=False, repr=False)
    _compiled_shape: tuple[int, ...] | None = field(default=None, init=False, repr=False)
    _calls_left: int = field(default=0, init=False, repr=False)
    _decided: bool = field(default=False, init=False, repr=False)
    _warned_overflow: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.torch_device = resolve_device(self.device)
        self.resolved_precision = resolve_precision(self.precision, self.torch_device)
        self.compile = resolve_compile(self.compile)
        # float32 whatever torch's default dtype: in a host that had set
        # torch.set_default_dtype(torch.float64) the model was built, and run, in float64,
        # and wrote other pixels than `geosr run` does for the same precision.
        self.model = self.model.eval().to(self.torch_device, dtype=torch.float32)
        # channels_last is ~2.4x faster for fp32 3x3 convs on this class of CPU (oneDNN).
        self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        from geosr.models.base import SRModel  # here: geosr.models imports this module

        if isinstance(self.model, SRModel):
            # A geosr network: convolutions with their activation or sum fused in, on a CPU
            # (geosr.models.fused): cnnrnn-fast's bf16 forward ~1.2x faster.
            self.model.fuse_convolutions = True

    @property
    def compiled(self) -> bool:
        """True once batches run through the compiled model."""
        return self._compiled is not None

    def batch_size_for(self, read_shape: tuple[int, int], bands: int, frames: int = 1) -> int:
        """Tiles per call for read windows of ``read_shape``: measured on a GPU, fixed on a CPU.

        On CUDA, one tile is run and its peak memory measured; the batches of the
        run's lanes (:meth:`lanes`, whose calls are on the GPU at once) then fill
        :data:`GPU_MEMORY_SHARE` of the free memory together, and hold
        :data:`GPU_MAX_BATCH` tiles together at most (the out-of-memory back-off in
        :meth:`__call__` covers a wrong guess).  On a CPU larger
        batches do not run faster per tile (oneDNN already uses every core on
        one tile), so a batch holds :data:`CPU_BATCH` images at most: small, so
        that reading and writing overlap with compute in short steps, and so
        that a 13-band tile does not hold 26 images' activations at once.
        """
        if self.torch_device.type != "cuda":
            return cpu_batch(self._images_per_tile(bands))
        device = self.torch_device
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        self._predict(self.model, np.zeros((1, frames, bands, *read_shape), dtype=np.float32))
        per_tile = max(1, torch.cuda.max_memory_allocated(device) - before)
        free, _ = torch.cuda.mem_get_info(device)
        lanes = self.lanes()  # whose calls are on the GPU at once
        return int(max(1, min(GPU_MAX_BATCH // lanes, GPU_MEMORY_SHARE * free // (per_tile * lanes))))

    @property
    def per_band(self) -> bool:
        """Whether the model's bands may be split across calls (:attr:`SRModel.per_band`)."""
        return bool(getattr(self.model, "per_band", False))

    def _images_per_tile(self, bands: int) -> int:
        return bands if self.per_band else 1

    def _call_size(self) -> int | None:
        """Images one CPU model call holds (:data:`CPU_CALL_IMAGES`); None on a GPU, whose
        batch is sized from its measured memory and runs as one call."""
        if self.torch_device.type != "cpu":
            return None
        return CPU_CALL_IMAGES[self.resolved_precision]

    def _most_per_call(self, size: int) -> int:
        return size if size == 1 else size + 1  # an odd image out joins the last call

    def whole_call_tiles(self, bands: int) -> int:
        """The fewest tiles of ``bands`` bands that fill a model call: fewer are computed
        with copies of an image (:data:`CPU_CALL_IMAGES`), so a Dask task of fewer
        (:func:`geosr.orchestrate.cluster.task_size`) would pay for work it drops."""
        size = self._call_size()
        return 1 if size is None else -(-size // self._images_per_tile(bands))

    def images_per_call(self, batch: int, bands: int) -> int:
        """The most images one model call holds for ``batch`` tiles of ``bands`` bands."""
        images = batch * self._images_per_tile(bands)
        size = self._call_size()
        return images if size is None else min(images, self._most_per_call(size))

    def lanes(self) -> int:
        """Batches a single-process run computes at once (:func:`geosr.pipeline.run_tiles`):
        2 for an eager model on a CPU with 2 torch threads or more, each call on its share of
        them (:meth:`predict_in_lane`); on a GPU, :func:`gpu_lanes` of the CPUs; else 1.

        Measured on 2 cores (2048^2 scene, x4, COG out, against one lane on both cores,
        interleaved in one process): cnnrnn-fast 1.08x in bf16 and 1.04x in fp32, the same
        pixels; peak RSS grows by the second lane's activations (0.72 to 0.95 GB for
        cnnrnn-fast x4 in bf16).  A compiled model stays in one thread (its compilation is
        not made for two).
        """
        if self.compile != "off":
            return 1
        if self.torch_device.type == "cuda":
            return gpu_lanes(usable_cpus())
        if self.torch_device.type != "cpu":
            return 1
        return 2 if torch.get_num_threads() >= 2 else 1

    def predict_in_lane(self, batch: np.ndarray) -> list[np.ndarray]:
        """:meth:`__call__` on an even share of torch's threads with the other lanes
        (:func:`shared_threads`): with the calls the pipeline expects at once
        (:data:`geosr.lanes.PEERS`: half of them each on 2 lanes from the first call on), a
        lone call (the end of a job, the only batch with data) all of them."""
        with shared_threads(expected=PEERS.get()):
            return self(batch)

    def expect(self, calls: int) -> None:
        """Announce how many batches the job will send (lets ``compile=auto`` decide)."""
        self._calls_left = calls

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """Predict a ``(B, T, C, h, w)`` float32 batch: one ``(C, s*h, s*w)`` float32 array per tile.

        A list, not one array: the outputs of a batch's several calls
        (:data:`CPU_CALL_IMAGES`) are not copied into one (17 MiB per 542 px image at x4).
        """
        self._calls_left -= 1
        if self.compile == "on" and not self._decided:
            self._start_compiled(batch)
        if self._compiled is not None and self._fits_compiled(batch):
            return self._predict_compiled(batch)
        start = time.perf_counter()
        out = self._predict_eager(batch)
        if self.compile == "auto" and not self._decided:
            self._decided = True
            if compile_pays_off(time.perf_counter() - start, self._calls_left, self.torch_device):
                log.info("compiling the model for the %d batches left", self._calls_left)
                self._start_compiled(batch)
        return out

    def _predict_eager(self, batch: np.ndarray) -> list[np.ndarray]:
        try:
            return self._predict(self.model, batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            if self.torch_device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(batch) // 2
            log.info("out of memory at batch %d; retrying as %d + %d", len(batch), half, len(batch) - half)
            return self._predict_eager(batch[:half]) + self._predict_eager(batch[half:])

    def _start_compiled(self, batch: np.ndarray) -> None:
        """Compile for ``batch``'s shape, with weights frozen into the graph (inference only)."""
        self._decided = True
        self._compiled = torch.compile(self.model, dynamic=False, options={"freezing": True})  # type: ignore[assignment]
        self._compiled_shape = batch.shape
        try:
            self._predict_compiled(batch)  # compiles now, not in the middle of the run
        except Exception as exc:  # inductor raises many kinds; eager always works
            log.warning("torch.compile failed (%s); running eager", str(exc).splitlines()[0][:200])
            self._compiled = None

    def _fits_compiled(self, batch: np.ndarray) -> bool:
        shape = self._compiled_shape
        if shape is None or batch.shape[1:] != shape[1:]:
            return False
        # One image a call (bf16 on a CPU), the compiled shape is one image's, whatever the batch.
        return self._call_size() == 1 or len(batch) <= shape[0]

    def _predict_compiled(self, batch: np.ndarray) -> list[np.ndarray]:
        compiled, shape = self._compiled, self._compiled_shape
        if compiled is None or shape is None:
            raise RuntimeError("the compiled model is used before it was built")
        n = len(batch)
        missing = 0 if self._call_size() == 1 else shape[0] - n
        if missing:
            # One fixed shape: a new one would compile again.  Tiles are independent,
            # so repeating the last one and dropping its outputs changes nothing.
            batch = np.concatenate([batch, np.repeat(batch[-1:], missing, axis=0)])
        return self._predict(compiled, batch)[:n]

    def _predict(self, model: torch.nn.Module, batch: np.ndarray) -> list[np.ndarray]:
        size = self._call_size()
        images = len(batch) * self._images_per_tile(batch.shape[2])
        if size is None or images <= self._most_per_call(size):
            if images == 1 and size is not None and size > 1:
                return self._predict_lone(model, batch)
            return list(self._predict_call(model, batch))
        return self._predict_in_parts(model, batch, size)

    def _predict_lone(self, model: torch.nn.Module, batch: np.ndarray) -> list[np.ndarray]:
        """One image where calls take two (fp32 on a CPU): its two halves, each grown by the
        model's receptive field, in one call of two images.

        A lone image rounds differently in oneDNN's fp32 kernels (:data:`CPU_CALL_IMAGES`),
        so it used to go with a copy of itself, whose output was dropped: twice its compute,
        a scene of one tile (an archive of 256 px chips) at half speed.  Each half's output
        pixels depend only on pixels inside it (the receptive field reaches no further), and
        calls of two images give the same bits at any size: the halves put together are the
        pixels of the whole image among others.  A model whose receptive field is not known,
        or an image too small to gain, still goes with its copy.
        """
        h, w = batch.shape[3:]
        radius = _receptive_radius(self.model, frames=batch.shape[1])
        axis = 4 if w >= h else 3  # cut across the longer side: the halves' overlap is smaller
        length = batch.shape[axis]
        cut = -(-length // 2)  # the first half's last pixel + 1; the second's first
        if radius is None or cut + radius >= length:
            return list(self._predict_call(model, np.concatenate([batch, batch])))[:1]
        part = cut + radius
        halves = np.concatenate(
            [batch.take(range(part), axis=axis), batch.take(range(length - part, length), axis=axis)]
        )
        first, second = self._predict_call(model, halves)
        out_axis = axis - 2  # an output image is (C, H, W)
        scale = first.shape[out_axis] // part
        before_cut = (cut + part - length) * scale  # the second half's output pixels before the cut
        head = np.split(first, [cut * scale], axis=out_axis)[0]
        tail = np.split(second, [before_cut], axis=out_axis)[1]
        return [np.concatenate([head, tail], axis=out_axis)]

    def _predict_in_parts(self, model: torch.nn.Module, batch: np.ndarray, size: int) -> list[np.ndarray]:
        """Calls of ``size`` images: the bands of every tile for a band-agnostic model, else tiles.

        Parts are independent (bands are, in a per-band model), so they give the pixels
        of one call over the whole batch with a fraction of its activations alive at once.
        An odd image out of pairs joins the last call: see :data:`CPU_CALL_IMAGES`.
        """
        n, frames, bands, h, w = batch.shape
        images = batch
        if self.per_band:
            images = batch.transpose(0, 2, 1, 3, 4).reshape(n * bands, frames, 1, h, w)
        cuts = [*range(0, len(images), size), len(images)]
        if cuts[-1] - cuts[-2] < size:
            del cuts[-2]
        outputs = [
            image
            for start, stop in itertools.pairwise(cuts)
            for image in self._predict_call(model, images[start:stop])
        ]
        if not self.per_band or bands == 1:
            return outputs  # an image is a tile
        return [np.concatenate(outputs[t * bands : (t + 1) * bands]) for t in range(n)]

    def _predict_call(self, model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
        _RESHARE.get()()  # in a lane: its share of the threads now (shared_threads)
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.torch_device.type == "cuda":
            x = x.pin_memory().to(self.torch_device, non_blocking=True)
        dtype = _AUTOCAST.get(self.resolved_precision)
        y = self._forward(model, x, dtype)
        if self.resolved_precision in OVERFLOW_CHECKED and not bool(torch.isfinite(y).all()):
            y = self._forward_in_fp32(model, x)
        return y.float().cpu().numpy()

    def _forward(self, model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
        """``model(x)``, autocast to ``dtype`` (None: float32 throughout)."""
        with (
            torch.inference_mode(),
            torch.autocast(self.torch_device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            return model(x)

    def _forward_in_fp32(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A call whose reduced-precision outputs overflowed, computed again in float32, said once."""
        if not self._warned_overflow:
            self._warned_overflow = True
            warn(
                f"the model overflowed {self.resolved_precision} (infinite or NaN outputs) on a batch; "
                "such batches are computed again in fp32, the same pixels as --precision fp32 "
                "(pass --precision fp32 to skip the first try)"
            )
        return self._forward(model, x, None)

    def weights_digest(self) -> str:
        """SHA-256 of the model's parameters and buffers (names, shapes, values).

        Part of a run's fingerprint: a resumed run must use the very same weights.
        """
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(
                tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            )
        return digest.hexdigest()[:16]

    def model_bytes(self) -> int:
        """Bytes of the model's parameters and buffers (for the memory guard)."""
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
