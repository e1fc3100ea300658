"""TensorRT backend: a self-describing .plan run on CUDA streams through cuda-python.

- TensorRT 10+ tensor API only: set_input_shape, set_tensor_address, execute_async_v3.
- Memory, streams and events through cuda-python's runtime bindings (cuda.bindings.runtime). The
  runtime API works on the device's primary context, which every host thread shares: no context
  push/pop as with pycuda, so the agent may call from any thread.
- One slot per in-flight batch (default 2, `streams`): a CUDA copy stream, pinned host buffers and
  device buffers for the input and both outputs, and three events, all allocated once at load. No
  allocation per frame or per batch.
- Each execution context has its own compute stream: TensorRT forbids enqueueing one context on
  two streams at once. There is one context, or one per optimisation profile when the plan has
  several (build-engine --profiles); slot i uses context i mod contexts.
- Per batch: frames into the slot's pinned buffer; on the copy stream the H2D copy and an event;
  the compute stream waits for that event, runs execute_async_v3 and records an event; the copy
  stream waits for it, runs the D2H copies and records "done". So the H2D copy of batch k+1 and the
  D2H copy of batch k-1 overlap the compute of batch k, all ordered by CUDA events, with no host
  synchronisation until collect().
- submit(images) -> ticket and collect(ticket) -> (score, anomaly_map): results come back in ticket
  (frame) order. infer() is submit + collect, split into chunks of at most the plan's max batch.

tensorrt and cuda-python are imported only when a backend is created: the rest of the inspector
works without them. This module imports neither torch nor timm.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InspectorError, ModelError
from ..modelmeta import ModelMeta
from .base import Backend

INPUT, SCORE, MAP = "image", "score", "anomaly_map"


class CudaError(InspectorError):
    """A CUDA runtime call failed (no GPU, driver too old, out of memory...)."""


# ---------------------------------------------------------------------------------------------
# Lazy imports and CUDA helpers (shared with build_engine.builder)


def import_tensorrt():
    try:
        import tensorrt  # noqa: PLC0415
    except ImportError as exc:
        raise ModelError(f"TensorRT is not installed (Python package 'tensorrt': {exc}); run the agent in NVIDIA's TensorRT "
                         "container or install TensorRT's Python wheel") from None
    return tensorrt


def import_cudart():
    """cuda-python's runtime module: cuda.bindings.runtime (cuda-python >= 12.6), else cuda.cudart."""
    try:
        from cuda.bindings import runtime  # noqa: PLC0415

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart  # noqa: PLC0415

        return cudart
    except ImportError:
        raise ModelError("cuda-python is not installed (module cuda.bindings.runtime): pip install cuda-python") from None


def check(result: Any, what: str) -> Any:
    """cuda-python returns (cudaError_t, *values): raise CudaError on failure, else the value(s)."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        raise CudaError(f"{what} failed ({error_text(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def error_text(err: Any) -> str:
    try:
        rt = import_cudart()
        name = rt.cudaGetErrorName(err)[1]
        text = rt.cudaGetErrorString(err)[1]
        return f"{name.decode() if isinstance(name, bytes) else name}: {text.decode() if isinstance(text, bytes) else text}"
    except Exception:  # error reporting must not raise
        return f"error {int(err)}"


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "major.minor"
    memory_mb: int


def gpu_info(device: int = 0) -> GpuInfo:
    """The CUDA device's name and compute capability, or CudaError naming why there is none."""
    rt = import_cudart()
    count = check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if not count:
        raise CudaError("no CUDA GPU is visible (cudaGetDeviceCount returned 0)")
    if not 0 <= device < count:
        raise CudaError(f"CUDA device {device} does not exist ({count} visible)")
    prop = check(rt.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return GpuInfo(device, str(name).strip(), f"{prop.major}.{prop.minor}", int(prop.totalGlobalMem) >> 20)


class PinnedArray:
    """A numpy view of page-locked host memory from cudaMallocHost (freed by free())."""

    def __init__(self, rt, shape: tuple[int, ...], dtype: np.dtype):
        self.rt, self.nbytes = rt, int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.ptr = int(check(rt.cudaMallocHost(self.nbytes), f"cudaMallocHost({self.nbytes})"))
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = None
            check(self.rt.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class DeviceBuffer:
    def __init__(self, rt, nbytes: int):
        self.rt, self.nbytes = rt, int(nbytes)
        self.ptr = int(check(rt.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})"))

    def free(self) -> None:
        if self.ptr:
            check(self.rt.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


# ---------------------------------------------------------------------------------------------


@dataclass
class _Slot:
    index: int
    stream: Any
    context: int  # index into the backend's execution contexts (and compute streams)
    h_in: PinnedArray
    h_score: PinnedArray
    h_map: PinnedArray
    d_in: DeviceBuffer
    d_score: DeviceBuffer
    d_map: DeviceBuffer
    uploaded: Any  # event after the H2D copy (the compute stream waits on it)
    computed: Any  # event after execute_async_v3 (the copy stream waits on it)
    done: Any  # event after the D2H copies
    ticket: int | None = None
    n: int = 0  # valid frames in the batch (the rest is padding up to the profile's min)
    buffers: list = field(default_factory=list)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: str | Path, streams: int = 2, device: int = 0, max_batch: int | None = None,
                 threads: int = 0):
        """Load a .plan (see build_engine.plan), refusing one built for another TensorRT version or GPU.

        streams: in-flight slots (>= 1); max_batch: cap the per-slot buffers below the plan's max;
        threads: accepted for interface parity with onnxruntime, unused."""
        from build_engine.plan import check_compatible, read_plan

        self.path = Path(path)
        self._closed = True
        plan = read_plan(self.path)
        trt = import_tensorrt()
        gpu = gpu_info(device)
        check_compatible(plan.header, trt.__version__, gpu.name, gpu.compute_capability, str(self.path))
        self.header = plan.header
        self._setup(plan.engine, plan.meta, streams, device, max_batch)

    @classmethod
    def from_engine(cls, engine: bytes, meta: ModelMeta, source: str = "engine", streams: int = 2, device: int = 0,
                    max_batch: int | None = None) -> "TensorRTBackend":
        """Run raw engine bytes with the given metadata (the builder's self-check); no plan checks."""
        self = cls.__new__(cls)
        self.path = Path(source)
        self._closed = True
        self.header = None
        self._setup(engine, meta, streams, device, max_batch)
        return self

    # -- setup ----------------------------------------------------------------------------------

    def _setup(self, engine_bytes: bytes, meta: ModelMeta, streams: int, device: int, max_batch: int | None) -> None:
        if int(streams) < 1:
            raise ModelError(f"streams: {streams} must be at least 1")
        trt, rt = import_tensorrt(), import_cudart()
        self.trt, self.rt, self.meta, self.device = trt, rt, meta, int(device)
        self._lock = threading.RLock()
        self._slots: list[_Slot] = []
        self._contexts: list[Any] = []
        self._compute_streams: list[Any] = []  # one per execution context
        self._results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._next_ticket, self._next_slot = 0, 0
        self._closed = False
        check(rt.cudaSetDevice(self.device), f"cudaSetDevice({self.device})")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(bytes(engine_bytes))
        if self.engine is None:
            raise ModelError(f"{self.path}: TensorRT could not deserialize the engine (see its log above); "
                             "it was built by another TensorRT version or for another GPU, or is corrupt")
        try:
            self._check_io()
            self._allocate(int(streams), max_batch)
        except BaseException:
            self.close()
            raise

    def _check_io(self) -> None:
        trt, eng, pre = self.trt, self.engine, self.meta.preprocess
        names = {eng.get_tensor_name(i) for i in range(eng.num_io_tensors)}
        missing = {INPUT, SCORE, MAP} - names
        if missing:
            raise ModelError(f"{self.path}: engine lacks I/O tensors {sorted(missing)} (has {sorted(names)})")
        want = {INPUT: (trt.TensorIOMode.INPUT, trt.DataType.UINT8, (pre.crop_h, pre.crop_w, 3)),
                SCORE: (trt.TensorIOMode.OUTPUT, trt.DataType.FLOAT, ()),
                MAP: (trt.TensorIOMode.OUTPUT, trt.DataType.FLOAT, (self.meta.map_h, self.meta.map_w))}
        for name, (mode, dtype, tail) in want.items():
            shape = tuple(eng.get_tensor_shape(name))
            if eng.get_tensor_mode(name) != mode or eng.get_tensor_dtype(name) != dtype or shape[1:] != tail:
                raise ModelError(f"{self.path}: tensor {name!r} is {eng.get_tensor_mode(name)} {eng.get_tensor_dtype(name)} "
                                 f"{shape}, expected {mode} {dtype} [N, {', '.join(map(str, tail))}]")
        profiles = eng.num_optimization_profiles
        lo, _, hi = eng.get_tensor_profile_shape(INPUT, 0)
        self.batch_min, self.profile_max = int(lo[0]), int(hi[0])
        for k in range(1, profiles):
            lo_k, _, hi_k = eng.get_tensor_profile_shape(INPUT, k)
            self.batch_min, self.profile_max = max(self.batch_min, int(lo_k[0])), min(self.profile_max, int(hi_k[0]))
        self.profiles = profiles

    def _allocate(self, streams: int, max_batch: int | None) -> None:
        rt, trt, pre = self.rt, self.trt, self.meta.preprocess
        cap = self.profile_max if max_batch is None else min(int(max_batch), self.profile_max)
        if cap < self.batch_min:
            raise ModelError(f"max_batch: {max_batch} is below the plan's minimum batch {self.batch_min}")
        self.max_batch = cap
        n_ctx = max(1, min(streams, self.profiles))
        for i in range(streams):
            stream = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
            flags = rt.cudaEventDisableTiming
            uploaded, computed, done = (check(rt.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags") for _ in range(3))
            bufs = []
            try:
                h_in = PinnedArray(rt, (cap, pre.crop_h, pre.crop_w, 3), np.uint8)
                bufs.append(h_in)
                h_score = PinnedArray(rt, (cap,), np.float32)
                bufs.append(h_score)
                h_map = PinnedArray(rt, (cap, self.meta.map_h, self.meta.map_w), np.float32)
                bufs.append(h_map)
                d_in, d_score, d_map = (DeviceBuffer(rt, h.nbytes) for h in (h_in, h_score, h_map))
                bufs += [d_in, d_score, d_map]
            except BaseException:
                for b in bufs:
                    b.free()
                raise
            slot = _Slot(i, stream, i % n_ctx, h_in, h_score, h_map, d_in, d_score, d_map, uploaded, computed, done,
                         buffers=bufs)
            self._slots.append(slot)
        for slot in self._slots:  # padding frames (batches below the profile's min) read zeros
            slot.h_in.array[:] = 0
        for k in range(n_ctx):
            stream = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
            self._compute_streams.append(stream)
            ctx = self.engine.create_execution_context()
            if ctx is None:
                raise CudaError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)")
            self._contexts.append(ctx)
            if k:
                if not ctx.set_optimization_profile_async(k, int(stream)):
                    raise ModelError(f"{self.path}: cannot select optimisation profile {k}")
                check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    # -- the async API ----------------------------------------------------------------------------

    def submit(self, images: np.ndarray) -> int:
        """Queue a batch (uint8 [N, H, W, 3], N <= max_batch) and return its ticket at once.

        When every slot is in flight, the oldest one is waited for and its result kept for collect()."""
        self.check_input(images)
        n = len(images)
        if not 1 <= n <= self.max_batch:
            raise ModelError(f"{self.path}: a submitted batch holds 1 to {self.max_batch} frames, got {n}; infer() splits larger ones")
        with self._lock:
            self._require_open()
            self._set_device()
            slot = self._slots[self._next_slot]
            self._next_slot = (self._next_slot + 1) % len(self._slots)
            if slot.ticket is not None:
                self._finish(slot)
            ticket = self._next_ticket
            self._next_ticket += 1
            try:
                self._enqueue(slot, images)
            except BaseException:
                slot.ticket = None
                raise
            slot.ticket = ticket
            return ticket

    def collect(self, ticket: int) -> tuple[np.ndarray, np.ndarray]:
        """(score float32 [N], anomaly_map float32 [N, h, w]) of a submitted batch, waiting for it if needed."""
        with self._lock:
            self._require_open()
            if ticket in self._results:
                return self._results.pop(ticket)
            slot = next((s for s in self._slots if s.ticket == ticket), None)
            if slot is None:
                raise ModelError(f"{self.path}: no pending batch with ticket {ticket} (already collected?)")
            self._set_device()
            self._finish(slot)
            return self._results.pop(ticket)

    def ready(self, ticket: int) -> bool:
        """True once collect(ticket) would not block."""
        with self._lock:
            if ticket in self._results:
                return True
            slot = next((s for s in self._slots if s.ticket == ticket), None)
            if slot is None:
                raise ModelError(f"{self.path}: no pending batch with ticket {ticket}")
            err = self.rt.cudaEventQuery(slot.done)[0]
            if int(err) == int(self.rt.cudaError_t.cudaErrorNotReady):
                return False
            check((err,), "cudaEventQuery")
            return True

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.check_input(images)
        if len(images) == 0:
            return np.zeros((0,), np.float32), np.zeros((0, self.meta.map_h, self.meta.map_w), np.float32)
        tickets, results = [], []
        for i in range(0, len(images), self.max_batch):
            if len(tickets) == len(self._slots):  # keep every slot busy, collect in order
                results.append(self.collect(tickets.pop(0)))
            tickets.append(self.submit(images[i : i + self.max_batch]))
        results.extend(self.collect(t) for t in tickets)
        return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])

    # -- internals ----------------------------------------------------------------------------------

    def _set_device(self) -> None:
        if self.device:  # the runtime's current device is per host thread
            check(self.rt.cudaSetDevice(self.device), f"cudaSetDevice({self.device})")

    def _require_open(self) -> None:
        if self._closed:
            raise ModelError(f"{self.path}: backend is closed")

    def _enqueue(self, slot: _Slot, images: np.ndarray) -> None:
        rt, pre = self.rt, self.meta.preprocess
        n = len(images)
        nb = max(n, self.batch_min)
        np.copyto(slot.h_in.array[:n], images)
        if nb > n:
            slot.h_in.array[n:nb] = 0
        frame = pre.crop_h * pre.crop_w * 3
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(rt.cudaMemcpyAsync(slot.d_in.ptr, slot.h_in.ptr, nb * frame, h2d, slot.stream), "cudaMemcpyAsync H2D")
        check(rt.cudaEventRecord(slot.uploaded, slot.stream), "cudaEventRecord")
        ctx, compute = self._contexts[slot.context], self._compute_streams[slot.context]
        check(rt.cudaStreamWaitEvent(compute, slot.uploaded, 0), "cudaStreamWaitEvent")
        if not ctx.set_input_shape(INPUT, (nb, pre.crop_h, pre.crop_w, 3)):
            raise ModelError(f"{self.path}: batch {nb} is outside the plan's profile {self.batch_min}..{self.profile_max}")
        for name, buf in ((INPUT, slot.d_in), (SCORE, slot.d_score), (MAP, slot.d_map)):
            if not ctx.set_tensor_address(name, buf.ptr):
                raise ModelError(f"{self.path}: TensorRT refused the address of tensor {name!r}")
        if not ctx.execute_async_v3(int(compute)):
            raise ModelError(f"{self.path}: TensorRT execute_async_v3 failed (see its log above)")
        check(rt.cudaEventRecord(slot.computed, compute), "cudaEventRecord")
        check(rt.cudaStreamWaitEvent(slot.stream, slot.computed, 0), "cudaStreamWaitEvent")
        check(rt.cudaMemcpyAsync(slot.h_score.ptr, slot.d_score.ptr, nb * 4, d2h, slot.stream), "cudaMemcpyAsync D2H score")
        map_bytes = nb * self.meta.map_h * self.meta.map_w * 4
        check(rt.cudaMemcpyAsync(slot.h_map.ptr, slot.d_map.ptr, map_bytes, d2h, slot.stream), "cudaMemcpyAsync D2H map")
        check(rt.cudaEventRecord(slot.done, slot.stream), "cudaEventRecord")
        slot.n = n

    def _finish(self, slot: _Slot) -> None:
        """Wait for a slot's batch, keep its result (copied out of the pinned buffers), free the slot."""
        check(self.rt.cudaEventSynchronize(slot.done), "cudaEventSynchronize")
        self._results[slot.ticket] = (slot.h_score.array[: slot.n].copy(), slot.h_map.array[: slot.n].copy())
        slot.ticket = None

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        rt = self.rt
        for slot in self._slots:
            try:
                rt.cudaEventSynchronize(slot.done)
            except Exception:
                pass
        self._contexts.clear()  # contexts before the engine, the engine before the runtime
        self.engine = None
        self._runtime = None
        for slot in self._slots:
            for buf in slot.buffers:
                try:
                    buf.free()
                except CudaError:
                    pass
            for ev in (slot.uploaded, slot.computed, slot.done):
                rt.cudaEventDestroy(ev)
            rt.cudaStreamDestroy(slot.stream)
        for stream in self._compute_streams:
            rt.cudaStreamDestroy(stream)
        self._compute_streams.clear()
        self._slots.clear()
        self._results.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
