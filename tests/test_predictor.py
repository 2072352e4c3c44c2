"""The predictor: compilation (same pixels, fixed batch shape), its auto rule, the allocator."""

from __future__ import annotations

import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch

from geosr.allocator import keep_freed_memory
from geosr.errors import GeosrWarning, OptionError
from geosr.models import load_model
from geosr.options import RunOptions
from geosr.predictor import COMPILE_COST_S, COMPILE_SAVING, Predictor, compile_pays_off


def tiny_model() -> torch.nn.Module:
    from geosr.models.cnnrnn import CNNRNN, CNNRNNConfig

    torch.manual_seed(0)
    net = CNNRNN(CNNRNNConfig(scale=2, features=4, encoder_blocks=1, refine_steps=1))
    for p in net.parameters():  # the last layer starts at zero: make it do something
        torch.nn.init.normal_(p, std=0.1)
    return net


def batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 1, 2, 12, 12)).astype(np.float32)


@pytest.mark.slow
def test_compiled_model_gives_the_eager_pixels_and_pads_short_batches() -> None:
    eager = Predictor(tiny_model(), device="cpu", precision="fp32", compile="off")
    compiled = Predictor(tiny_model(), device="cpu", precision="fp32", compile="on")
    full, short = batch(3, 1), batch(2, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_allclose(compiled(full), eager(full), atol=1e-5)
    # Compiling says nothing a user would see (the CLI shows UserWarnings, as
    # Python does by default, not torch's own DeprecationWarnings): `geosr run
    # --compile on` printed Dynamo's multi-line warning about the bicubic
    # kernel's cache wrapper.
    assert not [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    assert compiled.compiled
    # The last batch of a job is shorter: padded to the compiled shape, cut back after.
    out = np.asarray(compiled(short))
    assert out.shape == (2, 2, 24, 24)
    np.testing.assert_allclose(out, eager(short), atol=1e-5)
    # A batch larger than the compiled shape runs eager rather than compiling again.
    np.testing.assert_allclose(compiled(batch(4, 3)), eager(batch(4, 3)), atol=1e-5)


def test_auto_compiles_only_when_the_announced_job_repays_it() -> None:
    gpu = torch.device("cuda")
    assert not compile_pays_off(seconds_per_call=1.0, calls_left=10, device=gpu)
    calls = int(COMPILE_COST_S / COMPILE_SAVING) + 1
    assert compile_pays_off(seconds_per_call=1.0, calls_left=calls, device=gpu)
    predictor = Predictor(tiny_model(), device="cpu", precision="fp32", compile="auto")
    predictor.expect(3)  # a small job: a few milliseconds per batch
    for seed in range(3):
        predictor(batch(2, seed))
    assert not predictor.compiled


def test_auto_never_compiles_on_a_cpu_where_the_fused_eager_model_is_faster() -> None:
    """Figure 10 (2026-12-03): compiled, the default model's compute ran at 0.84x the fused eager
    model's on a CPU; auto compiled any job announcing enough batches, to run it slower."""
    assert not compile_pays_off(seconds_per_call=10.0, calls_left=10**6, device=torch.device("cpu"))
    predictor = Predictor(tiny_model(), device="cpu", precision="fp32", compile="auto")
    predictor.expect(10**9)  # a job whose announced length would repay any compilation
    predictor(batch(2, 0))
    predictor(batch(2, 1))
    assert not predictor.compiled


@pytest.mark.parametrize("mode", ["yes", "max"])
def test_unknown_compile_mode_is_refused(mode: str) -> None:
    with pytest.raises(OptionError, match="--compile"):
        RunOptions(compile=mode)
    with pytest.raises(OptionError, match="--compile"):
        Predictor(load_model("bicubic", bands=1, scale=2), device="cpu", compile=mode)


def test_allocator_tuning_applies_once_and_keeps_results() -> None:
    first = keep_freed_memory()
    assert keep_freed_memory() is first  # cached: the process is tuned once
    x = torch.rand(2, 64, 300, 300)  # > 32 MiB: a mapping of its own without the tuning
    assert torch.equal((x * 2) / 2, x)


# These ask for bf16 on any CPU; where it is emulated, geosr warns (tested below).
EMULATED_BF16_OK = pytest.mark.filterwarnings("ignore:--precision bf16:geosr.errors.GeosrWarning")


@EMULATED_BF16_OK
def test_cpu_batch_counts_the_images_a_model_sees() -> None:
    """A band-agnostic model sees each band of a tile as an image: many-band tiles go one at
    a time; a model built for a band layout sees one image per tile."""
    from geosr.models.cnnrnn import CNNRNN, CNNRNNConfig
    from geosr.predictor import CPU_BATCH

    agnostic = Predictor(tiny_model(), device="cpu", precision="fp32")
    assert agnostic.batch_size_for((40, 40), bands=1) == CPU_BATCH
    assert agnostic.batch_size_for((40, 40), bands=3) == 1
    assert agnostic.batch_size_for((40, 40), bands=13) == 1
    assert agnostic.images_per_call(batch=1, bands=13) == 3  # fp32: pairs, the odd band joins one
    bf16 = Predictor(tiny_model(), device="cpu", precision="bf16")
    assert bf16.batch_size_for((40, 40), bands=1) == CPU_BATCH
    assert bf16.images_per_call(batch=1, bands=13) == 1  # bf16: one image a call
    net = CNNRNN(CNNRNNConfig(scale=2, features=4, in_channels=3))
    layout = Predictor(net, device="cpu", precision="fp32")
    assert not layout.per_band
    assert layout.batch_size_for((40, 40), bands=3) == CPU_BATCH
    assert layout.images_per_call(batch=2, bands=3) == 2
    assert Predictor(net, device="cpu", precision="bf16").images_per_call(batch=2, bands=3) == 1


@EMULATED_BF16_OK
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_calls_hold_one_image_in_bf16_and_pairs_in_fp32_with_the_whole_calls_pixels(
    precision: str,
) -> None:
    """On a CPU a batch runs as calls of CPU_CALL_IMAGES images, the bands of every tile
    flattened (bounded activations): one image a call in bf16, pairs in fp32 with an odd
    image out joining the last call.  The pixels are those of one call over the whole
    batch, to float rounding (oneDNN may pick another kernel for another batch size: 1 ulp
    at most here).  A model built for a band layout sees tiles, not bands, in its calls."""
    predictor = Predictor(tiny_model(), device="cpu", precision=precision)
    x = np.random.default_rng(3).uniform(0, 1, (2, 1, 5, 12, 12)).astype(np.float32)
    odd = np.random.default_rng(4).uniform(0, 1, (1, 1, 7, 12, 12)).astype(np.float32)
    calls = []
    model = predictor.model
    forward = model.forward
    model.forward = lambda t: calls.append(tuple(t.shape)) or forward(t)  # type: ignore[method-assign]
    split, split_odd = np.asarray(predictor(x)), np.asarray(predictor(odd))
    model.forward = forward  # type: ignore[method-assign]
    if precision == "bf16":
        assert calls == [(1, 1, 1, 12, 12)] * (10 + 7)
    else:  # 10 images (tile 0's 5 bands, then tile 1's), then 7: the odd one joins the last pair
        assert calls == [(2, 1, 1, 12, 12)] * 5 + [(2, 1, 1, 12, 12)] * 2 + [(3, 1, 1, 12, 12)]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=precision == "bf16"):
        whole = model(torch.from_numpy(x)).float().numpy()
        whole_odd = model(torch.from_numpy(odd)).float().numpy()
    np.testing.assert_allclose(split, whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(split_odd, whole_odd, rtol=1e-6, atol=1e-6)

    from geosr.models.cnnrnn import CNNRNN, CNNRNNConfig

    net = CNNRNN(CNNRNNConfig(scale=2, features=4, in_channels=3))
    layout = Predictor(net, device="cpu", precision=precision)
    tiles = np.random.default_rng(5).uniform(0, 1, (4, 1, 3, 12, 12)).astype(np.float32)
    calls.clear()
    forward = layout.model.forward
    layout.model.forward = lambda t: calls.append(tuple(t.shape)) or forward(t)  # type: ignore[method-assign]
    out = np.asarray(layout(tiles))
    layout.model.forward = forward  # type: ignore[method-assign]
    assert calls == ([(1, 1, 3, 12, 12)] * 4 if precision == "bf16" else [(2, 1, 3, 12, 12)] * 2)
    assert out.shape == (4, 3, 24, 24)


@pytest.mark.parametrize("frames", [1, 3])
def test_a_lone_fp32_image_is_its_two_halves_in_one_call_with_the_bits_it_has_among_others(
    frames: int,
) -> None:
    """fp32 calls on a CPU take two images (a lone one rounds differently): a lone image goes
    as its two halves, each grown by the receptive field, cut across its longer side, not with
    a copy of itself at twice the compute.  Its pixels are, to the bit, those it has in a call
    with another image; an image too small to gain still goes with its copy."""
    predictor = Predictor(tiny_model(), device="cpu", precision="fp32")
    radius = predictor.model.receptive_radius(frames)
    rng = np.random.default_rng(frames)
    calls = []
    forward = predictor.model.forward
    predictor.model.forward = lambda t: calls.append(tuple(t.shape)) or forward(t)  # type: ignore[method-assign]
    long, short = 4 * radius + 11, 2 * radius + 3
    for shape, call in [
        ((short, long), (2, frames, 1, short, long - long // 2 + radius)),  # wide: cut across columns
        ((long, short), (2, frames, 1, long - long // 2 + radius, short)),  # tall: across rows
        ((2 * radius, 2 * radius), (2, frames, 1, 2 * radius, 2 * radius)),  # too small: with its copy
    ]:
        image = rng.uniform(0, 1, (1, frames, 1, *shape)).astype(np.float32)
        other = rng.uniform(0, 1, image.shape).astype(np.float32)
        calls.clear()
        lone = predictor(image)[0]
        assert calls == [call]
        among = predictor(np.concatenate([image, other]))[0]
        assert lone.shape == (1, 2 * shape[0], 2 * shape[1])
        assert lone.tobytes() == among.tobytes(), shape


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_batch_from_free_memory_and_pixels_match_the_cpu() -> None:
    from geosr.predictor import GPU_MAX_BATCH

    gpu = Predictor(tiny_model(), device="cuda", precision="fp32")
    size = gpu.batch_size_for((12, 12), bands=2)
    assert 1 <= size <= GPU_MAX_BATCH
    cpu = Predictor(tiny_model(), device="cpu", precision="fp32")
    np.testing.assert_allclose(gpu(batch(3)), cpu(batch(3)), atol=1e-4)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator and /proc are Linux's")
def test_model_calls_in_threads_reuse_freed_memory() -> None:
    """Tiles are predicted in threads too (Dask worker threads; the reader and writers
    allocate): once warm, their freed blocks are reused, not unmapped and faulted in again.
    Page faults are counted, not timed, in a fresh process (no arena exists yet); glibc's
    per-thread arenas took thousands per round (and 13 % of a 2-worker run's time).  The
    process tunes its allocator first, as the command and the benchmarks do: the Python API
    leaves its host's alone."""
    code = """
from geosr.allocator import keep_freed_memory
keep_freed_memory()
import resource, threading, numpy as np, torch
from geosr.models import load_model
from geosr.predictor import Predictor
torch.set_num_threads(1)
predictor = Predictor(load_model(None, bands=1, scale=4), device="cpu")
tile = np.random.default_rng(0).random((1, 1, 1, 64, 64), np.float32)
def work():
    for _ in range(4):
        predictor(tile)
def together():
    threads = [threading.Thread(target=work) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
together()  # grows the heap
for _ in range(ROUNDS):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    together()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    result = subprocess.run(
        [sys.executable, "-c", code.replace("ROUNDS", "10")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    faults = [int(n) for n in result.stdout.split()[-10:]]
    # Per warm round: 8-17 faults here, with now and then a round of a few hundred or thousand
    # while the one heap still grows to the threads' coinciding peaks; with glibc's per-thread
    # arenas, which fault their blocks in again round after round, 16 000-26 000 in every
    # round for these 64^2 tiles (80 000-200 000 for 256^2).  So the median round.
    assert sorted(faults)[len(faults) // 2] < 1000, faults


def test_bf16_asked_on_a_cpu_without_it_warns_and_auto_picks_what_the_cpu_has() -> None:
    """On this machine's real CPU: no warning where oneDNN has native bf16, one where it would
    emulate it (about 10x slower than fp32, seen on an AVX2 EPYC)."""
    import warnings

    from geosr.predictor import cpu_has_bf16, resolve_precision

    cpu = torch.device("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_precision("bf16", cpu) == "bf16"  # asked for: still honoured
        assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_bf16() else "fp32")
    messages = [str(w.message) for w in caught if issubclass(w.category, GeosrWarning)]
    if cpu_has_bf16():
        assert messages == []
    else:
        assert len(messages) == 1 and "no native bf16" in messages[0] and "--precision auto" in messages[0]


def test_two_lanes_on_a_cpu_with_two_threads_or_more_and_an_eager_model() -> None:
    """Two batches at once on a CPU with two torch threads or more; one where a lane would have
    no thread of its own, or the model is compiled."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        eager = Predictor(tiny_model(), device="cpu", precision="fp32")
        assert eager.lanes() == 2
        assert Predictor(tiny_model(), device="cpu", precision="fp32", compile="on").lanes() == 1
        torch.set_num_threads(1)
        assert eager.lanes() == 1
    finally:
        torch.set_num_threads(before)


def test_a_gpu_takes_a_lane_per_four_cpus_up_to_four() -> None:
    """On a GPU a lane's CPU work (normalising, copies, casting, writing) overlaps the other
    lanes' model calls: one lane where the CPUs are few, as before."""
    from geosr.predictor import GPU_LANES_MAX, gpu_lanes

    assert [gpu_lanes(cpus) for cpus in (1, 2, 4, 7, 8, 12, 16, 64)] == [1, 1, 1, 1, 2, 3, 4, 4]
    assert GPU_LANES_MAX == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_lanes_share_the_batch_and_write_the_pixels_of_one_lane(
    make_raster, tmp_path, monkeypatch
) -> None:
    """A run on the GPU in lanes: each lane's batch is its share of the GPU's (memory and
    GPU_MAX_BATCH), and the pixels are those of one lane (in fp32, to 1 DN: cuDNN may pick
    other kernels for other batch sizes)."""
    import rasterio

    import geosr
    import geosr.predictor
    from geosr.predictor import GPU_MAX_BATCH, gpu_lanes
    from geosr.resources import usable_cpus

    gpu = Predictor(tiny_model(), device="cuda", precision="fp32")
    assert gpu.lanes() == gpu_lanes(usable_cpus())
    assert 1 <= gpu.batch_size_for((12, 12), bands=2) <= GPU_MAX_BATCH // gpu.lanes()
    scene = make_raster("in.tif", width=400, height=300)
    pixels = {}
    for lanes in (3, 1):
        monkeypatch.setattr(geosr.predictor, "gpu_lanes", lambda cpus, lanes=lanes: lanes)
        out = geosr.upscale_file(
            scene, tmp_path / f"lanes{lanes}.tif", scale=2, tile=64, device="cuda", precision="fp32"
        )
        with rasterio.open(out) as src:
            pixels[lanes] = src.read().astype(np.int64)
    assert np.abs(pixels[3] - pixels[1]).max() <= 1


def test_calls_in_flight_at_once_share_torchs_threads_and_give_them_back() -> None:
    """A run's lanes each ran a model call on all of torch's threads: two on 4 threads ran 8.
    A call takes its share of them as it starts (all of them alone: the last batch of a job),
    in its own thread, which has the host's count back as it ends."""
    from geosr.predictor import shared_threads

    before = torch.get_num_threads()
    first_inside, second_done = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def call(name: str) -> None:
        with shared_threads():
            seen[name] = torch.get_num_threads()
            if name == "first":
                first_inside.set()
                second_done.wait(timeout=10)  # still in flight while the second starts
            else:
                second_done.set()
        seen[name + " after"] = torch.get_num_threads()

    try:
        torch.set_num_threads(4)
        first = threading.Thread(target=call, args=("first",))
        first.start()
        first_inside.wait(timeout=10)
        second = threading.Thread(target=call, args=("second",))
        second.start()
        for thread in (first, second):
            thread.join()
        assert seen == {"first": 4, "second": 2, "first after": 4, "second after": 4}
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def threads_of_each_forward(predictor: Predictor) -> list[int]:
    """A list that gets torch's thread count as each model call of ``predictor`` starts."""
    seen: list[int] = []
    forward = predictor.model.forward

    def counting(*args: object, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return forward(*args, **kwargs)

    predictor.model.forward = counting  # type: ignore[method-assign]
    return seen


@EMULATED_BF16_OK
def test_a_lane_takes_its_share_again_before_each_model_call_of_its_batch() -> None:
    """A batch is several model calls (one image each in bf16): a lane whose peer finished its
    last batch, with none left to take, computed the rest of its own on half the threads."""
    from geosr.lanes import PEERS

    before = torch.get_num_threads()
    predictor = Predictor(tiny_model(), device="cpu", precision="bf16")
    seen = threads_of_each_forward(predictor)
    try:
        torch.set_num_threads(4)
        token = PEERS.set(lambda: 1 if seen else 2)  # the peer is done after the first call
        try:
            predictor.predict_in_lane(batch(1))  # one tile of 2 bands: 2 calls of one image
        finally:
            PEERS.reset(token)
        assert seen == [2, 4] and torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_a_lanes_call_shares_the_threads_with_the_calls_the_pipeline_expects() -> None:
    """The first lane's first call of a job, started a few milliseconds before the second
    lane's, took every thread and kept them while the second took its share: 3 threads on
    2 cores through both first calls.  A call now shares with the calls the pipeline expects
    at once (geosr.lanes.PEERS, which run_tiles keeps) when they are more than those
    in flight: half the threads on 2 lanes from the first call on; alone, all of them."""
    from geosr.lanes import PEERS
    from geosr.predictor import shared_threads

    before = torch.get_num_threads()
    predictor = Predictor(tiny_model(), device="cpu", precision="fp32")
    seen = threads_of_each_forward(predictor)

    def threads_of_a_call() -> set[int]:
        seen.clear()
        predictor.predict_in_lane(batch(2))
        return set(seen)

    try:
        torch.set_num_threads(4)
        with shared_threads(expected=lambda: 2):
            assert torch.get_num_threads() == 2
        with shared_threads(expected=lambda: 1):
            assert torch.get_num_threads() == 4
        token = PEERS.set(lambda: 2)
        try:
            assert threads_of_a_call() == {2}  # another call expected: half of them
        finally:
            PEERS.reset(token)
        assert threads_of_a_call() == {4}  # alone: all of them
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


class _OverflowsInBf16(torch.nn.Module):
    """Outputs beyond bf16's largest value (3.39e38) and within float32's (3.40e38): inf where a
    reduced precision computes them, finite in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1, bias=False)
        torch.nn.init.constant_(self.conv.weight, 3.4e38)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x[:, 0])


@EMULATED_BF16_OK
def test_a_reduced_precision_call_that_overflows_is_computed_again_in_fp32(monkeypatch) -> None:
    """fp16 (the auto precision of GPUs without bf16) stops at 65504: a call whose outputs
    overflow gave inf and NaN pixels.  Such a call is computed again in float32, with one
    warning for the run.  fp16 needs a GPU; bf16 on this CPU overflows the same way past its own
    largest value, so the check is turned on for it here."""
    import geosr.predictor

    monkeypatch.setattr(geosr.predictor, "OVERFLOW_CHECKED", ("bf16",))
    x = np.ones((2, 1, 1, 4, 4), np.float32)
    plain = Predictor(_OverflowsInBf16(), device="cpu", precision="fp32")(x)
    predictor = Predictor(_OverflowsInBf16(), device="cpu", precision="bf16")
    with pytest.warns(GeosrWarning, match="overflowed bf16") as warned:
        first, second = predictor(x), predictor(x)
    assert len(warned) == 1
    for out in (first, second):
        assert np.isfinite(np.stack(out)).all()
        np.testing.assert_array_equal(np.stack(out), np.stack(plain))
    monkeypatch.setattr(geosr.predictor, "OVERFLOW_CHECKED", ())
    assert not np.isfinite(np.stack(Predictor(_OverflowsInBf16(), device="cpu", precision="bf16")(x))).any()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_fp16_call_that_overflows_on_a_gpu_is_computed_again_in_fp32() -> None:
    """The case the check is for: outputs past fp16's 65504 (here 70000), finite in float32."""
    model = _OverflowsInBf16()
    torch.nn.init.constant_(model.conv.weight, 7e4)
    x = np.ones((2, 1, 1, 4, 4), np.float32)
    with pytest.warns(GeosrWarning, match="overflowed fp16"):
        out = np.stack(Predictor(model, device="cuda", precision="fp16")(x))
    assert np.isfinite(out).all() and np.allclose(out, 7e4)
