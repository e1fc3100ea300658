"""A CPU stand-in for cuda-python's runtime module and for TensorRT, to test the TensorRT backend's
and the builder's own logic (buffers, slots, tickets, ordering, padding, plan writing, refusals)
where there is no GPU. It proves nothing about the real libraries: tests that need them skip.

The fake CUDA is asynchronous in the way that matters: work queued on a stream runs only when
something waits for it (cudaEventSynchronize, cudaStreamSynchronize, a cudaStreamWaitEvent
dependency), so a backend that reads a result before waiting for it reads stale bytes. "Device"
memory is host memory (ctypes buffers); the fake engine runs an ONNX graph with onnxruntime on
the bytes at the tensor addresses it was given at enqueue time.
"""

from __future__ import annotations

import ctypes
import enum
import types
from dataclasses import dataclass, field

import numpy as np
import onnx


class Err(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidValue = 1
    cudaErrorNotReady = 600


class Kind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


@dataclass(eq=False)
class Stream:
    handle: int
    ops: list = field(default_factory=list)
    done: int = 0

    def __int__(self) -> int:
        return self.handle

    def run_to(self, upto: int) -> None:
        while self.done < upto:
            op = self.ops[self.done]
            self.done += 1
            op()


@dataclass(eq=False)
class Event:
    handle: int
    stream: Stream | None = None
    mark: int = 0

    def __int__(self) -> int:
        return self.handle


class FakeCudart(types.SimpleNamespace):
    """The subset of cuda.bindings.runtime the backend calls, returning (err, *values) tuples."""

    cudaError_t = Err
    cudaMemcpyKind = Kind
    cudaStreamNonBlocking = 1
    cudaEventDisableTiming = 2

    def __init__(self, devices: int = 1, name: str = "Fake GPU", cc: tuple[int, int] = (9, 0)):
        super().__init__()
        self.devices, self.gpu_name, self.cc = devices, name, cc
        self.buffers: dict[int, ctypes.Array] = {}
        self.host_allocs = self.device_allocs = 0
        self.streams: list[Stream] = []
        self.events: list[Event] = []
        self.log: list[tuple] = []  # (call, stream handle) of every async op, in issue order
        self._handles = 1000

    def _handle(self) -> int:
        self._handles += 1
        return self._handles

    # device
    def cudaGetDeviceCount(self):
        if not self.devices:
            return 100, None  # cudaErrorNoDevice
        return Err.cudaSuccess, self.devices

    def cudaGetDeviceProperties(self, dev):
        prop = types.SimpleNamespace(name=self.gpu_name.encode() + b"\0" * 8, major=self.cc[0], minor=self.cc[1],
                                     totalGlobalMem=80 << 30)
        return Err.cudaSuccess, prop

    def cudaRuntimeGetVersion(self):
        return Err.cudaSuccess, 12080

    def cudaDriverGetVersion(self):
        return Err.cudaSuccess, 12080

    def cudaSetDevice(self, dev):
        return (Err.cudaSuccess,) if 0 <= dev < self.devices else (Err.cudaErrorInvalidValue,)

    def cudaGetErrorName(self, err):
        return Err.cudaSuccess, f"error{int(err)}".encode()

    def cudaGetErrorString(self, err):
        return Err.cudaSuccess, b"fake error"

    # memory
    def _alloc(self, n):
        buf = ctypes.create_string_buffer(int(n))
        ptr = ctypes.addressof(buf)
        self.buffers[ptr] = buf
        return ptr

    def cudaMallocHost(self, n):
        self.host_allocs += 1
        return Err.cudaSuccess, self._alloc(n)

    def cudaMalloc(self, n):
        self.device_allocs += 1
        return Err.cudaSuccess, self._alloc(n)

    def cudaFreeHost(self, ptr):
        self.buffers.pop(int(ptr))
        return (Err.cudaSuccess,)

    cudaFree = cudaFreeHost

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        self.log.append(("memcpy", Kind(kind).name, int(stream)))
        stream.ops.append(lambda: ctypes.memmove(int(dst), int(src), int(n)))
        return (Err.cudaSuccess,)

    # streams and events
    def cudaStreamCreateWithFlags(self, flags):
        s = Stream(self._handle())
        self.streams.append(s)
        return Err.cudaSuccess, s

    def cudaStreamDestroy(self, s):
        self.streams.remove(s)
        return (Err.cudaSuccess,)

    def cudaStreamSynchronize(self, s):
        s.run_to(len(s.ops))
        return (Err.cudaSuccess,)

    def cudaEventCreateWithFlags(self, flags):
        e = Event(self._handle())
        self.events.append(e)
        return Err.cudaSuccess, e

    def cudaEventDestroy(self, e):
        self.events.remove(e)
        return (Err.cudaSuccess,)

    def cudaEventRecord(self, e, s):
        s.ops.append(lambda: None)
        e.stream, e.mark = s, len(s.ops)
        self.log.append(("record", e.handle, int(s)))
        return (Err.cudaSuccess,)

    def cudaEventSynchronize(self, e):
        if e.stream is not None:
            e.stream.run_to(e.mark)
        return (Err.cudaSuccess,)

    def cudaEventQuery(self, e):
        if e.stream is None or e.stream.done >= e.mark:
            return (Err.cudaSuccess,)
        return (Err.cudaErrorNotReady,)

    def cudaStreamWaitEvent(self, s, e, flags):
        src, mark = e.stream, e.mark
        self.log.append(("wait", e.handle, int(s)))
        if src is not None:
            s.ops.append(lambda: src.run_to(mark))
        return (Err.cudaSuccess,)

    def drain(self) -> None:
        """Let the fake GPU finish everything queued."""
        for s in self.streams:
            s.run_to(len(s.ops))


# ---------------------------------------------------------------------------------------------
# TensorRT


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    UINT8 = 7


class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = Severity

    def __init__(self, *a):
        pass


class Logger(ILogger):
    WARNING = Severity.WARNING

    def __init__(self, level=Severity.WARNING):
        self.level = level


class FakeEngine:
    """Runs an ONNX graph (the "engine bytes") with onnxruntime on the CPU."""

    def __init__(self, trt: "FakeTensorRT", onnx_bytes: bytes, batch=(1, 8, 32), profiles: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.trt = trt
        model = onnx.load_from_string(onnx_bytes)
        if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
            from build_engine.fp16 import emulate_fp16

            model = emulate_fp16(model)  # what a GPU's FP16 kernels store between layers
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self.batch, self.num_optimization_profiles = batch, profiles
        self.shapes = {"image": (-1, 224, 224, 3), "score": (-1,), "anomaly_map": (-1, 7, 7)}
        self.contexts: list[FakeContext] = []

    num_io_tensors = 3

    def get_tensor_name(self, i):
        return ("image", "score", "anomaly_map")[i]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == "image" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType.UINT8 if name == "image" else DataType.FLOAT

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def get_tensor_profile_shape(self, name, k):
        lo, opt, hi = self.batch
        return [(lo, 224, 224, 3), (opt, 224, 224, 3), (hi, 224, 224, 3)]

    def create_execution_context(self):
        ctx = FakeContext(self)
        self.contexts.append(ctx)
        return ctx


class FakeContext:
    def __init__(self, engine: FakeEngine):
        self.engine, self.shape, self.addr, self.profile, self.busy_until = engine, None, {}, 0, None
        self.runs: list[int] = []  # batch size of every execution

    def set_optimization_profile_async(self, k, stream):
        self.profile = k
        return 0 <= k < self.engine.num_optimization_profiles

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.batch
        if not lo <= shape[0] <= hi:
            return False
        self.shape = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.addr[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle):
        rt = self.engine.trt.cudart
        stream = next(s for s in rt.streams if s.handle == int(stream_handle))
        shape, addr = self.shape, dict(self.addr)  # TensorRT takes shapes and addresses at enqueue
        rt.log.append(("execute", id(self), int(stream_handle)))

        def run():
            n = shape[0]
            nbytes = int(np.prod(shape))
            images = np.frombuffer((ctypes.c_uint8 * nbytes).from_address(addr["image"]), np.uint8).reshape(shape)
            score, amap = self.engine.session.run(["score", "anomaly_map"], {"image": images.copy()})
            score = score * self.engine.trt.score_scale  # a test's stand-in for an engine that deviates
            ctypes.memmove(addr["score"], score.astype(np.float32).tobytes(), n * 4)
            ctypes.memmove(addr["anomaly_map"], amap.astype(np.float32).tobytes(), amap.size * 4)
            self.runs.append(n)

        stream.ops.append(run)
        return True


class Runtime:
    def __init__(self, logger, trt=None):
        self.trt = trt

    def deserialize_cuda_engine(self, data):
        data = bytes(data)
        if not data.startswith(b"FAKEENGINE"):
            return None
        return FakeEngine(self.trt, data[len(b"FAKEENGINE"):], self.trt.batch, self.trt.profiles)


class FakeTensorRT(types.SimpleNamespace):
    """The subset of the tensorrt module the backend and the builder call."""

    TensorIOMode = TensorIOMode
    DataType = DataType
    ILogger = ILogger
    Logger = Logger

    def __init__(self, cudart: FakeCudart, version: str = "10.99.0.1", batch=(1, 8, 32), profiles: int = 1):
        super().__init__()
        self.cudart, self.__version__, self.batch, self.profiles = cudart, version, batch, profiles
        self.built: list[dict] = []  # what each Builder.build_serialized_network call was given
        self.score_scale = 1.0
        trt = self

        class _Runtime(Runtime):
            def __init__(self, logger):
                super().__init__(logger, trt)

        self.Runtime = _Runtime
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
        self.BuilderFlag = types.SimpleNamespace(TF32=6)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
        self.Builder = lambda logger: _Builder(trt)
        self.OnnxParser = _Parser


@dataclass
class _Network:
    onnx: bytes = b""
    flags: int = 0

    num_inputs = 1

    def get_input(self, i):
        return types.SimpleNamespace(name="image")


class _Parser:
    def __init__(self, network, logger):
        self.network, self.num_errors = network, 0

    def parse(self, data):
        self.network.onnx = bytes(data)
        return True


class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = (lo, opt, hi)


class _TimingCache:
    def __init__(self, data: bytes):
        self.data = bytes(data) or b"FAKECACHE"

    def serialize(self):
        return self.data + b"+"


class _Config:
    def __init__(self):
        self.flags_cleared, self.pool, self.profiles, self.cache = [], {}, [], None

    def clear_flag(self, flag):
        self.flags_cleared.append(flag)

    def set_memory_pool_limit(self, pool, n):
        self.pool[pool] = n

    def add_optimization_profile(self, p):
        self.profiles.append(p)

    def create_timing_cache(self, data):
        return _TimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


class _Builder:
    def __init__(self, trt: FakeTensorRT):
        self.trt = trt

    def create_network(self, flags=0):
        return _Network(flags=flags)

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        self.trt.built.append({"flags": network.flags, "config": config, "onnx": network.onnx})
        return b"FAKEENGINE" + network.onnx


def install(monkeypatch, cudart: FakeCudart | None = None, **trt_kwargs) -> tuple[FakeCudart, FakeTensorRT]:
    """Make the backend and the builder import the fakes."""
    from inspector.backends import tensorrt_backend as tb

    rt = cudart or FakeCudart()
    trt = FakeTensorRT(rt, **trt_kwargs)
    monkeypatch.setattr(tb, "import_cudart", lambda: rt)
    monkeypatch.setattr(tb, "import_tensorrt", lambda: trt)
    return rt, trt
