"""onnxruntime through its C API: sessions for the on-device models, without numpy.

The Python binding of onnxruntime (``onnxruntime_pybind11_state``, 36 MB) and numpy,
which it needs, cost ~44 MiB of RSS at import on a ~51 MiB agent (docs/benchmarks.md).
The same wheel ships the plain C library (``capi/libonnxruntime.so.*``), whose stable C
API is a table of function pointers (``OrtApi``) reached through ``OrtGetApiBase()``.
This module loads the library and calls that table with ctypes (:class:`Runtime`);
edge_agent._ort_session builds what the model store needs on it: sessions from model
bytes, their inputs and outputs, and runs of one float32 input into one output tensor,
copied into Python lists.

``OrtApi`` is append-only: a function keeps its position in every later release, so the
positions below (from ``onnxruntime_c_api.h``) hold for any library that hands out API
version :data:`API_VERSION` (tests/edge/test_ort.py checks them against the Python
binding). Every object the C API allocates is released here: a status as soon as its
message is read, a name with the allocator that made it, type information and output
values right after they are read; sessions and tensors kept for reuse when their owner
is collected (edge_agent._ort_session).

The library is found beside the installed ``onnxruntime`` package (without importing
it), or at the path in ``TWINSYNC_ONNXRUNTIME_LIBRARY`` for devices that install only
the shared library.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Final

from ._errors import ModelError

__all__ = [
    "API_VERSION",
    "LIBRARY_ENV",
    "IOInfo",
    "Output",
    "Runtime",
    "find_library",
    "runtime",
]

#: The ``OrtApi`` version asked for: 1 already has every function used here, and any
#: onnxruntime release (1.x) serves it.
API_VERSION: Final = 1
#: Environment variable naming the C library to load (a device without the wheel).
LIBRARY_ENV: Final = "TWINSYNC_ONNXRUNTIME_LIBRARY"

# onnxruntime's Linux builds (1.32) embed a telemetry client that, unless disabled,
# queues usage events in a SQLite file under ~/.cache/Microsoft/DeveloperTools for upload
# to Microsoft, with a thread of its own and ~2 MiB of RSS. A device must not phone home
# or write to its flash behind our back. The library reads the variable when its env is
# made, so it is set before; an operator's own setting wins. DisableTelemetryEvents (also
# called) does not stop that client on its own (measured: same thread, same file).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# Enum values of the C API.
_LOGGING_LEVEL_WARNING: Final = 2
_LOGGING_LEVEL_ERROR: Final = 3
_ORT_SEQUENTIAL: Final = 0
_ORT_ENABLE_ALL: Final = 99  # what the Python binding uses by default
_ORT_ARENA_ALLOCATOR: Final = 1
_ORT_MEM_TYPE_DEFAULT: Final = 0
_ONNX_TYPE_TENSOR: Final = 1
_ELEMENT_FLOAT: Final = 1
_ELEMENT_INT64: Final = 7

# ONNXTensorElementDataType -> its ONNX name, as in the Python binding's "tensor(<name>)".
_ELEMENT_NAMES: Final = dict(
    enumerate(
        (
            *("undefined", "float", "uint8", "int8", "uint16", "int16", "int32", "int64"),
            *("string", "bool", "float16", "double", "uint32", "uint64", "complex64"),
            *("complex128", "bfloat16"),
        )
    )
)
# ... and the numpy dtype name an Output reports, where it differs from the ONNX name.
_NUMPY_NAMES: Final = {"float": "float32", "double": "float64", "string": "str"}
# The element types a run can copy out: ctypes type per ONNXTensorElementDataType.
_READABLE: Final[dict[int, type[ctypes.c_float] | type[ctypes.c_int64]]] = {
    _ELEMENT_FLOAT: ctypes.c_float,
    _ELEMENT_INT64: ctypes.c_int64,
}
_ONNX_TYPE_NAMES: Final = {2: "seq", 3: "map", 4: "opaque", 5: "sparse_tensor", 6: "optional"}

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_SIZE = ctypes.c_size_t
_INT = ctypes.c_int
_NAMES = ctypes.POINTER(ctypes.c_char_p)
_SIZES = ctypes.POINTER(_SIZE)
_INTS = ctypes.POINTER(_INT)
_INT64S = ctypes.POINTER(ctypes.c_int64)


# The functions used, by their position in the OrtApi table of function pointers
# (onnxruntime_c_api.h; all present since API version 1): (position, result, arguments).
# Most return an OrtStatus* (NULL on success): _P. Outputs are pointers to fill: _PP etc.
_FUNCTIONS: Final[dict[str, tuple[int, Any, tuple[Any, ...]]]] = {
    "GetErrorCode": (1, _INT, (_P,)),
    "GetErrorMessage": (2, ctypes.c_char_p, (_P,)),
    "CreateEnv": (3, _P, (_INT, ctypes.c_char_p, _PP)),
    "DisableTelemetryEvents": (6, _P, (_P,)),
    "CreateSessionFromArray": (8, _P, (_P, ctypes.c_char_p, _SIZE, _P, _PP)),
    "Run": (9, _P, (_P, _P, _NAMES, _PP, _SIZE, _NAMES, _SIZE, _PP)),
    "CreateSessionOptions": (10, _P, (_PP,)),
    "SetSessionExecutionMode": (13, _P, (_P, _INT)),
    "DisableCpuMemArena": (19, _P, (_P,)),
    "SetSessionLogSeverityLevel": (22, _P, (_P, _INT)),
    "SetSessionGraphOptimizationLevel": (23, _P, (_P, _INT)),
    "SetIntraOpNumThreads": (24, _P, (_P, _INT)),
    "SetInterOpNumThreads": (25, _P, (_P, _INT)),
    "SessionGetInputCount": (30, _P, (_P, _SIZES)),
    "SessionGetOutputCount": (31, _P, (_P, _SIZES)),
    "SessionGetInputTypeInfo": (33, _P, (_P, _SIZE, _PP)),
    "SessionGetOutputTypeInfo": (34, _P, (_P, _SIZE, _PP)),
    "SessionGetInputName": (36, _P, (_P, _SIZE, _P, _PP)),
    "SessionGetOutputName": (37, _P, (_P, _SIZE, _P, _PP)),
    "CreateTensorWithDataAsOrtValue": (49, _P, (_P, _P, _SIZE, _INT64S, _SIZE, _INT, _PP)),
    "GetTensorMutableData": (51, _P, (_P, _PP)),
    "CastTypeInfoToTensorInfo": (55, _P, (_P, _PP)),
    "GetOnnxTypeFromTypeInfo": (56, _P, (_P, _INTS)),
    "GetTensorElementType": (60, _P, (_P, _INTS)),
    "GetDimensionsCount": (61, _P, (_P, _SIZES)),
    "GetDimensions": (62, _P, (_P, _INT64S, _SIZE)),
    "GetSymbolicDimensions": (63, _P, (_P, _NAMES, _SIZE)),
    "GetTensorTypeAndShape": (65, _P, (_P, _PP)),
    "CreateCpuMemoryInfo": (69, _P, (_INT, _INT, _PP)),
    "AllocatorFree": (76, _P, (_P, _P)),
    "GetAllocatorWithDefaultOptions": (78, _P, (_PP,)),
    "ReleaseStatus": (93, None, (_P,)),
    "ReleaseSession": (95, None, (_P,)),
    "ReleaseValue": (96, None, (_P,)),
    "ReleaseTypeInfo": (98, None, (_P,)),
    "ReleaseTensorTypeAndShapeInfo": (99, None, (_P,)),
    "ReleaseSessionOptions": (100, None, (_P,)),
}


class _ApiBase(ctypes.Structure):
    _fields_ = (
        ("GetApi", ctypes.CFUNCTYPE(_P, ctypes.c_uint32)),
        ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p)),
    )


def find_library(environ: Mapping[str, str] | None = None) -> Path:
    """The onnxruntime C library to load: ``$TWINSYNC_ONNXRUNTIME_LIBRARY`` if set, else the
    one inside the installed ``onnxruntime`` package (found without importing it).

    Raises :class:`ModelError` (reason ``runtime_missing``) when there is none.
    """
    env = os.environ if environ is None else environ
    override = env.get(LIBRARY_ENV, "")
    if override:
        path = Path(override)
        if not path.is_file():
            raise ModelError(
                f"{LIBRARY_ENV}={override}: no such file (the onnxruntime C library, "
                "libonnxruntime.so.*)",
                reason="runtime_missing",
            )
        return path
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        # A wheel ships one, named libonnxruntime.so.<version>; should there be more
        # (a symlink, a leftover), the most specific name sorts last.
        found = sorted(Path(location, "capi").glob("libonnxruntime.so*"))
        if found:
            return found[-1]
    raise ModelError(
        "onnxruntime's C library not found: install the onnxruntime package "
        f"(pip install 'twinsync[edge]') or set {LIBRARY_ENV} to libonnxruntime.so",
        reason="runtime_missing",
    )


@dataclass(frozen=True, slots=True)
class IOInfo:
    """One input or output of a session, described like the Python binding does."""

    name: str
    #: ``tensor(float)``, ``tensor(int64)``, ...; ``seq``, ``map``... for non-tensors
    type: str
    #: dimensions; a dynamic one is its symbolic name, or None when it has none
    shape: tuple[int | str | None, ...]


@dataclass(frozen=True, slots=True)
class Output:
    """A tensor a run produced, copied out of onnxruntime: flat values in C order."""

    #: numpy's name of the element type (``float32``, ``int64``)
    dtype: str
    shape: tuple[int, ...]
    values: list[float] | list[int]

    def tolist(self) -> list[Any]:
        """The values nested by shape (as ``numpy.ndarray.tolist`` would give them)."""
        if len(self.shape) < 2:
            return list(self.values)
        step = math.prod(self.shape[1:])
        return [
            Output(self.dtype, self.shape[1:], self.values[i : i + step]).tolist()
            for i in range(0, len(self.values), step)
        ]


class Runtime:
    """The loaded library: its function table, one ``OrtEnv`` and the CPU memory info.

    One per process (:func:`runtime`); never released, since sessions need the env.
    ``api_version`` is the ``OrtApi`` version asked for (:data:`API_VERSION`; the table is
    append-only, so a later one keeps every position used here): a library that does not
    offer it is refused with a :class:`ModelError`.
    """

    def __init__(self, library: Path, *, api_version: int = API_VERSION) -> None:
        try:
            self._lib = ctypes.CDLL(str(library))
            get_base = self._lib.OrtGetApiBase
        except (OSError, AttributeError) as exc:
            raise ModelError(
                f"cannot load onnxruntime's C library {library}: {exc}", reason="runtime_missing"
            ) from exc
        get_base.restype = ctypes.POINTER(_ApiBase)
        get_base.argtypes = ()
        base = get_base().contents
        #: the library's version string, e.g. "1.32.0"
        self.version = (base.GetVersionString() or b"?").decode()
        table = base.GetApi(api_version)
        if not table:
            raise ModelError(
                f"onnxruntime {self.version} at {library} does not offer C API version "
                f"{api_version}",
                reason="runtime_missing",
            )
        self.library = library
        functions = ctypes.cast(table, _PP)
        #: the C functions used (``_FUNCTIONS``), called by their C names: ``rt.c.Run(...)``
        self.c = SimpleNamespace(
            **{
                name: ctypes.CFUNCTYPE(result, *arguments)(functions[position])
                for name, (position, result, arguments) in _FUNCTIONS.items()
            }
        )
        env = _P()
        self.check(self.c.CreateEnv(_LOGGING_LEVEL_WARNING, b"twinsync", ctypes.byref(env)))
        self._env = env
        self.check(self.c.DisableTelemetryEvents(env))
        cpu = _P()
        self.check(
            self.c.CreateCpuMemoryInfo(
                _ORT_ARENA_ALLOCATOR, _ORT_MEM_TYPE_DEFAULT, ctypes.byref(cpu)
            )
        )
        self.cpu = cpu
        allocator = _P()
        self.check(self.c.GetAllocatorWithDefaultOptions(ctypes.byref(allocator)))
        self._allocator = allocator  # onnxruntime's own: never freed

    # -- errors ------------------------------------------------------------------------
    def check(self, status: int | None) -> None:
        """Raise the error a returned ``OrtStatus*`` carries (NULL is success), freeing it."""
        if status:
            raise self.error(status)

    def error(self, status: int) -> ModelError:
        """The :class:`ModelError` for a non-NULL ``OrtStatus*``; releases the status."""
        try:
            code = self.c.GetErrorCode(status)
            message = (self.c.GetErrorMessage(status) or b"").decode(errors="replace")
        finally:
            self.c.ReleaseStatus(status)
        return ModelError(f"onnxruntime error {code}: {message}", reason="onnxruntime")

    # -- sessions ----------------------------------------------------------------------
    def create_session(self, model: bytes, *, cpu_arena: bool) -> ctypes.c_void_p:
        """An ``OrtSession*`` for the ONNX ``model`` bytes: CPU, one thread, sequential,
        every graph optimisation (the Python binding's default). The caller releases it
        (``ReleaseSession``): edge_agent._ort_session.Session does."""
        options = _P()
        self.check(self.c.CreateSessionOptions(ctypes.byref(options)))
        try:
            # One thread: predictions are one row at a time on a small CPU shared with
            # the agent; thread pools would only add wake-up latency and memory.
            self.check(self.c.SetIntraOpNumThreads(options, 1))
            self.check(self.c.SetInterOpNumThreads(options, 1))
            self.check(self.c.SetSessionExecutionMode(options, _ORT_SEQUENTIAL))
            self.check(self.c.SetSessionGraphOptimizationLevel(options, _ORT_ENABLE_ALL))
            self.check(self.c.SetSessionLogSeverityLevel(options, _LOGGING_LEVEL_ERROR))
            if not cpu_arena:
                self.check(self.c.DisableCpuMemArena(options))
            handle = _P()
            self.check(
                self.c.CreateSessionFromArray(
                    self._env, model, len(model), options, ctypes.byref(handle)
                )
            )
        finally:
            self.c.ReleaseSessionOptions(options)
        return handle

    def io(self, handle: _P, outputs: bool) -> list[IOInfo]:
        """Name, type and shape of every input (or output) of a session."""
        count = _SIZE()
        counter = self.c.SessionGetOutputCount if outputs else self.c.SessionGetInputCount
        self.check(counter(handle, ctypes.byref(count)))
        get_name = self.c.SessionGetOutputName if outputs else self.c.SessionGetInputName
        get_type = self.c.SessionGetOutputTypeInfo if outputs else self.c.SessionGetInputTypeInfo
        infos = []
        for i in range(count.value):
            raw = _P()
            self.check(get_name(handle, i, self._allocator, ctypes.byref(raw)))
            try:
                name = ctypes.string_at(raw).decode(errors="replace")
            finally:
                self.check(self.c.AllocatorFree(self._allocator, raw))
            type_info = _P()
            self.check(get_type(handle, i, ctypes.byref(type_info)))
            try:
                kind, shape = self._describe(type_info)
            finally:
                self.c.ReleaseTypeInfo(type_info)
            infos.append(IOInfo(name, kind, shape))
        return infos

    def _describe(self, type_info: _P) -> tuple[str, tuple[int | str | None, ...]]:
        onnx_type = _INT()
        self.check(self.c.GetOnnxTypeFromTypeInfo(type_info, ctypes.byref(onnx_type)))
        if onnx_type.value != _ONNX_TYPE_TENSOR:
            return _ONNX_TYPE_NAMES.get(onnx_type.value, f"onnx_type_{onnx_type.value}"), ()
        tensor = _P()  # owned by type_info: not released on its own
        self.check(self.c.CastTypeInfoToTensorInfo(type_info, ctypes.byref(tensor)))
        element = _INT()
        self.check(self.c.GetTensorElementType(tensor, ctypes.byref(element)))
        dims = self._shape_of(tensor)
        symbols = (ctypes.c_char_p * max(len(dims), 1))()
        self.check(self.c.GetSymbolicDimensions(tensor, symbols, len(dims)))
        shape = tuple(
            d if d >= 0 else (s.decode(errors="replace") if s else None)
            for d, s in zip(dims, symbols, strict=False)
        )
        return f"tensor({_element_name(element.value)})", shape

    def _shape_of(self, tensor_info: _P) -> tuple[int, ...]:
        count = _SIZE()
        self.check(self.c.GetDimensionsCount(tensor_info, ctypes.byref(count)))
        dims = (ctypes.c_int64 * max(count.value, 1))()
        self.check(self.c.GetDimensions(tensor_info, dims, count.value))
        return tuple(dims[: count.value])

    def read(self, value: _P) -> Output:
        """Copy a tensor ``OrtValue`` out (float32 and int64 only); does not release it."""
        info = _P()
        self.check(self.c.GetTensorTypeAndShape(value, ctypes.byref(info)))
        try:
            element = _INT()
            self.check(self.c.GetTensorElementType(info, ctypes.byref(element)))
            shape = self._shape_of(info)
        finally:
            self.c.ReleaseTensorTypeAndShapeInfo(info)
        c_type = _READABLE.get(element.value)
        name = _element_name(element.value)
        dtype = _NUMPY_NAMES.get(name, name)
        if c_type is None:
            return Output(dtype, shape, [])
        data = _P()
        self.check(self.c.GetTensorMutableData(value, ctypes.byref(data)))
        count = math.prod(shape)
        values = (c_type * count).from_address(data.value)[:] if count and data.value else []
        return Output(dtype, shape, values)


def _element_name(element: int) -> str:
    return _ELEMENT_NAMES.get(element, f"element_{element}")


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime(library: Path | None = None) -> Runtime:
    """The process's :class:`Runtime`, loaded on first use from ``library`` or
    :func:`find_library`. Raises :class:`ModelError` if it cannot be loaded."""
    global _runtime  # noqa: PLW0603 - one library and one env per process, made on demand
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(library or find_library())
        return _runtime
