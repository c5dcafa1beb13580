"""A small fake ``tensorrt`` module: enough of the builder API to test OUR build logic here.

What it checks is our side: which flags we pass for a TensorRT version, that every graph input
gets a profile with the right shapes, that parser errors reach the user by node, that the
timing cache is threaded from build to build, that a progress monitor is attached where the
bindings have one. It does not prove anything about the real TensorRT API (names, signatures,
behaviour): the ``trt`` test group does that on a machine with TensorRT.

The fake "parser" reads the real ONNX file (inputs, node op types) so that profiles are set for
the graph's actual inputs; the "engine" it builds is JSON recording what it was asked to do.
"""

from __future__ import annotations

import enum
import json
import types
from pathlib import Path

import onnx


class _Enum(enum.IntEnum):
    def __str__(self):
        return self.name


def make_fake_tensorrt(
    version: str = "10.13.0.35",
    *,
    parse_errors: list[tuple[int, str, str, str, str]] | None = None,
    build_fails: bool = False,
    builder_fails: bool = False,
    progress_monitor: bool = True,
    reject_cache: bool = False,
    reject_profile: bool = False,
    unreadable_cache: bool = False,
) -> types.ModuleType:
    """A module object standing in for ``tensorrt`` ``version``.

    ``parse_errors``: (node, name, op, code, desc) the parser reports (parse fails if any);
    ``build_fails``: build_serialized_network returns None after logging an error;
    ``builder_fails``: trt.Builder() raises like pybind does without a driver;
    ``progress_monitor``: whether the bindings have IProgressMonitor;
    ``reject_cache``: set_timing_cache refuses non-empty caches (another GPU's cache);
    ``unreadable_cache``: create_timing_cache returns None for a blob starting with ``b"corrupt"``
    (what TensorRT does with a cache it cannot deserialize). set_timing_cache(None, ...) always
    raises TypeError, as pybind does for None where an object is needed.

    The parser builds one layer per ONNX node, connected by tensor names, except ReduceL2, which
    becomes three layers as TensorRT's ONNX parser builds it: ELEMENTWISE x*x, REDUCE, UNARY sqrt.
    """
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []  # (call, details) in order, for the tests

    if major >= 11:
        trt.NetworkDefinitionCreationFlag = _Enum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 0})
        trt.BuilderFlag = _Enum("BuilderFlag", {"TF32": 0, "REFIT": 1})  # no FP16 / precision constraints on 11
    else:
        trt.NetworkDefinitionCreationFlag = _Enum("NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
        trt.BuilderFlag = _Enum("BuilderFlag", {"FP16": 0, "TF32": 1, "OBEY_PRECISION_CONSTRAINTS": 2, "PREFER_PRECISION_CONSTRAINTS": 3})
    trt.MemoryPoolType = _Enum("MemoryPoolType", {"WORKSPACE": 0})
    trt.LayerType = _Enum("LayerType", {"CONVOLUTION": 0, "MATRIX_MULTIPLY": 1, "ELEMENTWISE": 2, "NORMALIZATION": 3,
                                        "SOFTMAX": 4, "REDUCE": 5, "SHUFFLE": 6, "RESIZE": 7, "UNARY": 8})
    trt.DataType = _Enum("DataType", {"FLOAT": 0, "HALF": 1, "INT64": 2})
    trt.float32, trt.float16, trt.int64 = trt.DataType.FLOAT, trt.DataType.HALF, trt.DataType.INT64
    trt.TensorIOMode = _Enum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    op_layer = {"Conv": "CONVOLUTION", "MatMul": "MATRIX_MULTIPLY", "Add": "ELEMENTWISE", "Mul": "ELEMENTWISE",
                "LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX", "ReduceSum": "REDUCE", "ReduceMean": "REDUCE",
                "Resize": "RESIZE", "Sqrt": "UNARY", "Div": "ELEMENTWISE"}

    class ILogger:
        Severity = _Enum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4})

        def __init__(self):
            pass

    trt.ILogger = ILogger

    if progress_monitor:
        class IProgressMonitor:
            def __init__(self):
                pass

        trt.IProgressMonitor = IProgressMonitor

    class Tensor:
        def __init__(self, name, dtype):
            self.name, self.dtype = name, dtype

    class Layer:
        def __init__(self, op, name, inputs=(), outputs=None):
            self.type = getattr(trt.LayerType, op_layer.get(op, "SHUFFLE"))
            self.name = name
            self.precision = None
            self._in = [Tensor(t, trt.float32) for t in inputs]
            self._out = [Tensor(t, trt.float32) for t in (outputs or [name + ":0"])]
            self.num_inputs, self.num_outputs = len(self._in), len(self._out)
            self.output_types = {}

        def get_input(self, j):
            return self._in[j]

        def get_output(self, j):
            return self._out[j]

        def set_output_type(self, j, dtype):
            self.output_types[j] = dtype

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.inputs, self.layers = [], []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

        @property
        def num_layers(self):
            return len(self.layers)

        def get_layer(self, i):
            return self.layers[i]

    class ParserError:
        def __init__(self, node, name, op, code, desc):
            self._v = (node, name, op, code, desc)

        def node(self):
            return self._v[0]

        def node_name(self):
            return self._v[1]

        def node_operator(self):
            return self._v[2]

        def code(self):
            return self._v[3]

        def desc(self):
            return self._v[4]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse_from_file(self, path):
            trt.calls.append(("parse_from_file", path))
            self.network.onnx = path
            if parse_errors:
                self.errors = [ParserError(*e) for e in parse_errors]
                return False
            m = onnx.load(path, load_external_data=False)
            self.network.inputs = [Tensor(i.name, trt.float32) for i in m.graph.input]
            self.network.layers = []
            for k, n in enumerate(m.graph.node):
                name = n.name or f"{n.op_type}_{k}"
                ins = [t for t in n.input if t]
                if n.op_type == "ReduceL2":  # as the ONNX parser builds it: x*x -> sum -> sqrt
                    self.network.layers += [Layer("Mul", name, [ins[0], ins[0]], [name + ":sq"]),
                                            Layer("ReduceSum", name + "_1", [name + ":sq"], [name + ":sum"]),
                                            Layer("Sqrt", name + "_2", [name + ":sum"], list(n.output))]
                else:
                    self.network.layers.append(Layer(n.op_type, name, ins, list(n.output)))
            return True

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    trt.OnnxParser = OnnxParser

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = [list(lo), list(opt), list(hi)]

    class TimingCache:
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            return memoryview(self.blob)  # a buffer, as IHostMemory is

    class BuilderConfig:
        def __init__(self):
            self.flags, self.pools, self.profiles = [], {}, []
            self.cache = None
            self.progress_monitor = None

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def set_flag(self, flag):
            self.flags.append(flag)

        def add_optimization_profile(self, profile):
            if reject_profile:
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob):
            if unreadable_cache and bytes(blob).startswith(b"corrupt"):
                return None  # TensorRT logs "could not deserialize the timing cache" and returns nullptr
            return TimingCache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache is None:
                raise TypeError("set_timing_cache(): incompatible function arguments")
            if reject_cache and cache.blob:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            if builder_fails:
                raise TypeError("pybind11::init(): factory function returned nullptr")
            self.logger = logger

        def create_network(self, flags):
            trt.calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if config.progress_monitor is not None:
                pm = config.progress_monitor
                pm.phase_start("Building engine", None, 2)
                pm.phase_start("Tactic selection", "Building engine", 3)
                for s in range(3):
                    pm.step_complete("Tactic selection", s)
                pm.phase_finish("Tactic selection")
                pm.step_complete("Building engine", 0)
                pm.step_complete("Building engine", 1)
                pm.phase_finish("Building engine")
            if build_fails:
                self.logger.log(ILogger.Severity.ERROR, "out of memory while building layer foo")
                return None
            stage = network.layers and network.layers[0].name
            cache_in = config.cache.blob.decode(errors="replace")
            config.cache = TimingCache(config.cache.blob + f"|{'+'.join(t.name for t in network.inputs)}".encode())
            record = {
                "network_flags": network.flags,
                "builder_flags": [f.name for f in config.flags],
                "workspace": config.pools.get(trt.MemoryPoolType.WORKSPACE),
                "profiles": [p.shapes for p in config.profiles],
                "timing_cache_in": cache_in,
                "pinned": sorted(l.name for l in network.layers if l.precision == trt.float32),
                "pinned_outputs": sorted(l.name for l in network.layers if l.output_types),
                "first_layer": stage,
                "onnx": network.onnx,
            }
            trt.calls.append(("build_serialized_network", record))
            return memoryview(json.dumps(record).encode())

    trt.Builder = Builder
    _add_runtime(trt)
    return trt


def _add_runtime(trt) -> None:
    """``trt.Runtime``: an "engine" is its ONNX graph run by ONNX Runtime on the host memory at the
    addresses the backend binds (tests pair it with host stand-ins for cuda_memory)."""
    import ctypes

    import numpy as np
    import onnxruntime as ort

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name, shape):
            trt.calls.append(("set_input_shape", (self.engine.stage, name, tuple(shape))))
            self.shapes[name] = tuple(int(x) for x in shape)
            return name in self.engine.inputs

        def set_tensor_address(self, name, ptr):
            trt.calls.append(("set_tensor_address", (self.engine.stage, name)))
            self.addresses[name] = int(ptr)
            return name in self.engine.dims

        def get_tensor_shape(self, name):
            T = next(iter(self.shapes.values()))[0]
            return tuple(T if d == "T" else d for d in self.engine.dims[name])

        def execute_async_v3(self, stream_handle):
            trt.calls.append(("execute_async_v3", self.engine.stage))
            assert set(self.addresses) == set(self.engine.dims), "every I/O tensor needs an address"
            feeds = {}
            for name in self.engine.inputs:
                shape = self.shapes[name]
                n = int(np.prod(shape)) * 4
                feeds[name] = np.frombuffer((ctypes.c_uint8 * n).from_address(self.addresses[name]), np.float32).reshape(shape).copy()
            for name, value in zip(self.engine.outputs, self.engine.session.run(self.engine.outputs, feeds)):
                value = np.ascontiguousarray(value, np.float32)
                ctypes.memmove(self.addresses[name], value.ctypes.data, value.nbytes)
            return True

    class Engine:
        def __init__(self, record):
            import onnx

            m = onnx.load(record["onnx"])
            self.stage = Path(record["onnx"]).stem
            dims = lambda v: [d.dim_param if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
            self.inputs = [i.name for i in m.graph.input]
            self.outputs = [o.name for o in m.graph.output]
            self.dims = {v.name: dims(v) for v in [*m.graph.input, *m.graph.output]}
            self.session = ort.InferenceSession(record["onnx"], providers=["CPUExecutionProvider"])

        @property
        def num_io_tensors(self):
            return len(self.dims)

        def get_tensor_name(self, i):
            return [*self.inputs, *self.outputs][i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name in self.inputs else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return trt.float32

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            try:
                return Engine(json.loads(bytes(data)))
            except ValueError:
                self.logger.log(trt.ILogger.Severity.ERROR, "engine plan file is corrupted")
                return None

    trt.Runtime = Runtime


class HostMemory:
    """Stand-ins for avs_engine.gpu.cuda_memory on host memory: "device" buffers are host
    allocations, copies are memmoves, a CUDA graph replays its enqueue function."""

    def __init__(self):
        import ctypes

        self.ctypes = ctypes
        self.live: dict[int, object] = {}
        self.copies: list[tuple[str, str]] = []
        self.graph_captures = 0
        self.graph_launches = 0
        mem = self

        class DeviceBuffer:
            def __init__(self, nbytes, name="buffer"):
                self.name, self.ptr, self.nbytes = name, 0, 0
                self.ensure(nbytes)

            def ensure(self, nbytes):
                if nbytes <= self.nbytes and self.ptr:
                    return False
                self.free()
                self._raw = ctypes.create_string_buffer(max(int(nbytes), 1))
                self.ptr, self.nbytes = ctypes.addressof(self._raw), int(nbytes)
                mem.live[self.ptr] = self
                return True

            def free(self):
                mem.live.pop(self.ptr, None)
                self.ptr, self.nbytes = 0, 0

        class PinnedBuffer(DeviceBuffer):
            def array(self, shape, dtype):
                import numpy as np

                dtype = np.dtype(dtype)
                n = int(np.prod(shape)) * dtype.itemsize
                return np.frombuffer((ctypes.c_uint8 * max(n, 1)).from_address(self.ptr), np.uint8, count=n).view(dtype).reshape(shape)

        class Stream:
            handle = 1234

            def synchronize(self):
                pass

            def copy_to_device(self, dst, src, nbytes, what=""):
                mem.copies.append(("h2d", what))
                ctypes.memmove(dst, src, nbytes)

            def copy_to_host(self, dst, src, nbytes, what=""):
                mem.copies.append(("d2h", what))
                ctypes.memmove(dst, src, nbytes)

            def destroy(self):
                pass

        class CudaGraph:
            def __init__(self, stream, enqueue):
                mem.graph_captures += 1
                self.enqueue = enqueue

            def launch(self):
                mem.graph_launches += 1
                self.enqueue()

            def destroy(self):
                pass

        class Event:
            def __init__(self, stream):
                self.t = None

            def record(self):
                import time

                mem.events_recorded += 1
                self.t = time.perf_counter()

            def synchronize(self):
                pass

            def elapsed_s(self, later):
                return later.t - self.t

        self.events_recorded = 0
        self.DeviceBuffer, self.PinnedBuffer, self.Stream, self.CudaGraph, self.Event = DeviceBuffer, PinnedBuffer, Stream, CudaGraph, Event

    def install(self, monkeypatch, gpu=("NVIDIA H100 80GB HBM3", "9.0")):
        from avs_engine.gpu import cuda_memory as cm

        for name in ("DeviceBuffer", "PinnedBuffer", "Stream", "CudaGraph", "Event"):
            monkeypatch.setattr(cm, name, getattr(self, name))
        monkeypatch.setattr(cm, "cudart", lambda: None)
        monkeypatch.setattr(cm, "use_device", lambda device: None)
        monkeypatch.setattr(cm, "device_info", lambda device=0: gpu)
        return self
