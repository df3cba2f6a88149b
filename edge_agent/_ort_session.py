"""Sessions on onnxruntime's C API (edge_agent._ort): load a model, run it, copy out.

:class:`Session` owns an ``OrtSession*`` and describes its inputs and outputs;
:meth:`Session.run` runs one float32 batch and copies the output tensor into an
:class:`~edge_agent._ort.Output`. :class:`SingleRun` is the fast path for one row: its
input and output tensors are made once over ctypes buffers, so a prediction costs one
call into the library. What these allocate is released when they are collected.
"""

from __future__ import annotations

import ctypes
import math
import weakref
from typing import Any, Final

from ._errors import ModelError
from ._ort import Output, Runtime, runtime

__all__ = ["Session", "SingleRun", "open_session"]

_P = ctypes.c_void_p
_ELEMENT_FLOAT: Final = 1
_ELEMENT_INT64: Final = 7
# The output element types of the fast path: ctypes type and ONNXTensorElementDataType.
_C_TYPES: Final[dict[str, tuple[type[ctypes.c_float] | type[ctypes.c_int64], int]]] = {
    "float32": (ctypes.c_float, _ELEMENT_FLOAT),
    "int64": (ctypes.c_int64, _ELEMENT_INT64),
}


def open_session(model: bytes, *, cpu_arena: bool = False) -> Session:
    """A :class:`Session` for the ONNX ``model`` bytes on the process's runtime.

    The CPU memory arena is off unless asked for: it would keep the largest batch's
    buffers for good; off, the RSS is the same or 0.1 MiB lower and the latency of one
    row unchanged (docs/benchmarks.md). Raises :class:`ModelError`.
    """
    return Session(runtime(), model, cpu_arena=cpu_arena)


class Session:
    """One model loaded in onnxruntime; released when collected (a :class:`SingleRun`
    made from it keeps it alive)."""

    def __init__(self, rt: Runtime, model: bytes, *, cpu_arena: bool = False) -> None:
        handle = rt.create_session(model, cpu_arena=cpu_arena)
        self._rt = rt
        self._handle = handle
        self._finalizer = weakref.finalize(self, rt.c.ReleaseSession, handle)
        # At interpreter exit the process is going away; nothing to tidy in the library.
        self._finalizer.atexit = False
        #: the model's inputs and outputs, read once at load
        self.inputs = rt.io(handle, outputs=False)
        self.outputs = rt.io(handle, outputs=True)

    def run(
        self, input_name: str, output_name: str, data: ctypes.Array[Any], shape: tuple[int, int]
    ) -> Output:
        """Run the float32 tensor of ``shape`` in ``data`` (used in place, not copied) as
        ``input_name``; copy out ``output_name``."""
        rt = self._rt
        dims = (ctypes.c_int64 * 2)(*shape)
        nbytes = shape[0] * shape[1] * ctypes.sizeof(ctypes.c_float)
        if nbytes > ctypes.sizeof(data):
            raise ModelError(f"{shape} floats do not fit {len(data)}", reason="bad_features")
        value = _P()
        rt.check(
            rt.c.CreateTensorWithDataAsOrtValue(
                rt.cpu, data, nbytes, dims, 2, _ELEMENT_FLOAT, ctypes.byref(value)
            )
        )
        out = _P()
        try:
            rt.check(
                rt.c.Run(
                    self._handle,
                    None,
                    _names(input_name),
                    ctypes.byref(value),
                    1,
                    _names(output_name),
                    1,
                    ctypes.byref(out),
                )
            )
            return rt.read(out)
        finally:
            rt.c.ReleaseValue(out)  # NULL after a failed run: allowed
            rt.c.ReleaseValue(value)

    def single(
        self, input_name: str, width: int, output_name: str, element: str, shape: tuple[int, ...]
    ) -> SingleRun:
        """A :class:`SingleRun`: one ``[1, width]`` row in, ``output_name`` into a buffer of
        ``element`` (``float32`` or ``int64``) and ``shape`` that onnxruntime writes into."""
        return SingleRun(
            self, self._rt, self._handle, (input_name, width), (output_name, element, shape)
        )


class SingleRun:
    """The fast path for one row: input and output tensors made once over ctypes buffers,
    so a prediction is one call into onnxruntime. Not thread-safe: the caller locks.

    onnxruntime writes the output into the pre-allocated tensor, and fails the run (a
    :class:`ModelError`) if the model's output does not have exactly its type and shape.
    """

    def __init__(
        self,
        session: Session,
        rt: Runtime,
        handle: _P,
        feed: tuple[str, int],
        fetch: tuple[str, str, tuple[int, ...]],
    ) -> None:
        (input_name, width), (output_name, element, shape) = feed, fetch
        c_type, code = _C_TYPES[element]
        #: the input row: fill it, then call
        self.input = (ctypes.c_float * width)()
        #: the output, flat, valid until the next call
        self.output: ctypes.Array[Any] = (c_type * math.prod(shape))()
        self._rt, self._handle = rt, handle
        self._session = session  # the session must outlive these tensors
        self._in, self._out = _P(), _P()
        self._finalizer = weakref.finalize(self, _release_values, rt, self._in, self._out)
        self._finalizer.atexit = False
        in_shape = (ctypes.c_int64 * 2)(1, width)
        out_shape = (ctypes.c_int64 * len(shape))(*shape)
        rt.check(
            rt.c.CreateTensorWithDataAsOrtValue(
                rt.cpu,
                self.input,
                ctypes.sizeof(self.input),
                in_shape,
                2,
                _ELEMENT_FLOAT,
                ctypes.byref(self._in),
            )
        )
        rt.check(
            rt.c.CreateTensorWithDataAsOrtValue(
                rt.cpu,
                self.output,
                ctypes.sizeof(self.output),
                out_shape,
                len(shape),
                code,
                ctypes.byref(self._out),
            )
        )
        # Argument arrays built once: the call itself is then all that is left.
        self._args = (
            handle,
            None,
            _names(input_name),
            (_P * 1)(self._in),
            1,
            _names(output_name),
            1,
            (_P * 1)(self._out),
        )

    def __call__(self) -> ctypes.Array[Any]:
        """Run the model on :attr:`input`; return :attr:`output`."""
        status = self._rt.c.Run(*self._args)
        if status:
            raise self._rt.error(status)
        return self.output


def _names(name: str) -> ctypes.Array[ctypes.c_char_p]:
    return (ctypes.c_char_p * 1)(name.encode())


def _release_values(rt: Runtime, *values: _P) -> None:
    for value in values:
        rt.c.ReleaseValue(value)
