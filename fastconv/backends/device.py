"""What the two GPU backends (``numba-cuda``, ``cupy``) share: device memory, transfers, the
device's description and the translation of device errors.

On a GPU both hold CuPy arrays and use CuPy as ``xp``; their kernels differ, nothing else, so a
benchmark of one against the other compares kernels. Without a GPU (``NUMBA_ENABLE_CUDASIM=1``
for numba-cuda, ``FASTCONV_CUPY_EMULATE=1`` for cupy) device memory is emulated: arrays are
:class:`EmulatedDeviceArray`, a NumPy subclass that marks data as living "on the device", and the
kernels run on the CPU. The mark keeps transfers visible: :meth:`DeviceBackend.asarray` of a
host array is an upload and :meth:`DeviceBackend.to_host` a download, each counted in
:attr:`DeviceBackend.transfers`, exactly as on a GPU.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .base import Backend


class EmulatedDeviceArray(np.ndarray):
    """A NumPy array standing for device memory (emulated GPU backends). NumPy operations on it
    give arrays of the same class, as CuPy's give CuPy arrays: ufuncs and methods by NumPy's
    subclass rules, functions (``concatenate``, ``stack``, ``where`` ...) through
    ``__array_function__``."""

    def __array_function__(self, func, types, args, kwargs):
        return _marked(super().__array_function__(func, types, args, kwargs))


def _marked(result):
    if type(result) is np.ndarray:
        return result.view(EmulatedDeviceArray)
    if isinstance(result, (tuple, list)):
        return type(result)(_marked(r) for r in result)
    return result


class DeviceMemoryError(MemoryError):
    """A GPU ran out of memory; the message names the layer, the batch and what to try."""

    where: str | None = None


class DeviceError(RuntimeError):
    """A GPU reported an error; the message names the layer and the device."""

    where: str | None = None


def translate_device_error(exc: BaseException, backend, where: str,
                           batch: int | None) -> BaseException | None:
    """The error to raise instead of ``exc``, a device's raw out-of-memory or CUDA error met
    in ``where`` (``"layer 'conv1' (Conv2D)"``, ``"the backward pass"``) on a batch of
    ``batch``; None when ``exc`` is not one (or was already translated)."""
    if not isinstance(backend, DeviceBackend) or getattr(exc, "where", None) is not None:
        return None
    device = f"{backend.name} ({backend.device_string()})"
    if isinstance(exc, backend.memory_errors()):
        hint = (f": try batch_size={max(1, batch // 2)}" if batch and batch > 1 else
                ": the model does not fit in the device's memory even for one sample")
        err = DeviceMemoryError(f"{where} ran out of memory on {device} with a batch of "
                                f"{batch}{hint} ({exc})")
    elif isinstance(exc, backend.device_errors()):
        err = DeviceError(f"{where} failed on {device} with a batch of {batch}: {exc}")
    else:
        return None
    err.where = where
    return err


def batch_of(x) -> int | None:
    """The batch size of a layer's input (a Tensor, an array, or a list of them)."""
    if isinstance(x, (list, tuple)):
        x = x[0] if x else None
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape else None


class EmulatedArrayModule:
    """NumPy standing in for CuPy as the ``xp`` of an emulated GPU backend.

    Everything is NumPy's, except that what CuPy would put in device memory is marked as such:
    creation functions (``zeros``, ``empty``, ``arange`` ...) return device arrays, and
    ``asarray``/``ascontiguousarray``/``array`` keep device arrays on the device and upload host
    data (counted, as ``cupy.asarray`` of host data copies to the GPU)."""

    ndarray = np.ndarray
    _CREATORS = frozenset({"zeros", "empty", "ones", "full", "arange", "eye", "identity",
                           "linspace"})

    def __init__(self, transfers: TransferCounter):
        self._transfers = transfers

    def __getattr__(self, name):
        value = getattr(np, name)
        if name in self._CREATORS:
            def create(*args, **kwargs):
                return value(*args, **kwargs).view(EmulatedDeviceArray)

            return create
        return value

    def _to_device(self, out, source):
        if isinstance(source, EmulatedDeviceArray):
            return out if isinstance(out, EmulatedDeviceArray) else out.view(EmulatedDeviceArray)
        self._transfers.to_device += 1
        self._transfers.bytes_to_device += out.nbytes
        if isinstance(source, np.ndarray) and np.may_share_memory(out, source):
            out = out.copy()
        return out.view(EmulatedDeviceArray)

    def asarray(self, a, dtype=None, order=None):
        return self._to_device(np.asarray(a, dtype=dtype, order=order), a)

    def ascontiguousarray(self, a, dtype=None):
        return self._to_device(np.ascontiguousarray(a, dtype=dtype), a)

    def array(self, a, dtype=None, copy=True, order="K", ndmin=0):
        return self._to_device(np.array(a, dtype=dtype, copy=copy, order=order, ndmin=ndmin), a)


@dataclasses.dataclass
class TransferCounter:
    """Host-to-device and device-to-host copies made through a backend since :meth:`reset`."""

    to_device: int = 0
    to_host: int = 0
    bytes_to_device: int = 0
    bytes_to_host: int = 0

    def reset(self) -> None:
        self.to_device = self.to_host = self.bytes_to_device = self.bytes_to_host = 0


class DeviceBackend(Backend):
    """Base class of the GPU backends: arrays live on a device (or in emulated device memory).

    Subclasses set ``xp`` (CuPy, or NumPy when emulated), ``emulated``, their
    ``conv_algorithm_classes`` and four kernel modules, each a set of launchers taking the
    backend first: ``gemm`` (``matmul``, ``describe``), ``pool`` (``max_forward``,
    ``max_backward``, ``avg_forward``, ``avg_backward``), ``elementwise``
    (``bias_activation``, ``epilogue_backward``, ``adam_update``, ``random_uniform``) and
    ``normalization`` (the ``batch_norm_*`` and ``lrn_*`` primitives, same names). The
    primitives below delegate to them, so the two GPU backends differ in kernels only.
    """

    gemm = pool = elementwise = normalization = None

    #: True when the kernels run on the CPU on NumPy memory (simulator or emulation)
    emulated = True
    inference_chunk_bytes = 0

    def __init__(self):
        super().__init__()
        self.transfers = TransferCounter()
        if self.emulated:
            self.xp = EmulatedArrayModule(self.transfers)
        else:
            import cupy

            self.xp = cupy

    # -- memory -----------------------------------------------------------------------------
    def is_device_array(self, a) -> bool:
        if self.emulated:
            return isinstance(a, EmulatedDeviceArray)
        return isinstance(a, self.xp.ndarray)

    def asarray(self, a, dtype=None):
        if self.is_device_array(a):
            if dtype is not None and a.dtype != np.dtype(dtype):
                a = a.astype(dtype)
            return self.device(a)
        host = np.asarray(a, dtype=dtype)
        if not host.flags.c_contiguous:
            host = host.copy(order="C")
        if not self.emulated:  # the emulated module counts its own uploads
            self.transfers.to_device += 1
            self.transfers.bytes_to_device += host.nbytes
        return self.xp.asarray(host)

    def empty(self, shape, dtype):
        """Uninitialised device memory."""
        out = self.xp.empty(shape, dtype=dtype)
        return out.view(EmulatedDeviceArray) if self.emulated else out

    def zeros(self, shape, dtype):
        out = self.xp.zeros(shape, dtype=dtype)
        return out.view(EmulatedDeviceArray) if self.emulated else out

    def device(self, a):
        """``a`` (device data) as C-contiguous device memory, 0-d arrays kept 0-d; in
        emulation a plain NumPy result computed from device data is marked again (no copy)."""
        if not a.flags.c_contiguous:
            a = a.copy(order="C")
        if self.emulated and not isinstance(a, EmulatedDeviceArray):
            a = a.view(EmulatedDeviceArray)
        return a

    def to_host(self, a):
        self.transfers.to_host += 1
        if self.emulated:
            host = np.array(a, copy=True).view(np.ndarray)
        else:
            host = self.xp.asnumpy(a)
        self.transfers.bytes_to_host += host.nbytes
        return host

    # -- devices ----------------------------------------------------------------------------
    def device_count(self) -> int:
        """GPUs this backend can run on (one when emulated)."""
        return 1 if self.emulated else int(self.xp.cuda.runtime.getDeviceCount())

    def select_device(self, index: int) -> int:
        """Make GPU ``index`` current for this thread (``'name:index'`` backend names);
        returns the index that was current."""
        count = self.device_count()
        if not 0 <= index < count:
            where = "an emulated device" if self.emulated else f"{count} GPU(s)"
            raise ValueError(f"backend '{self.name}:{index}': there is {where} here, "
                             f"numbered 0 to {count - 1}")
        if self.emulated:
            return 0
        previous = int(self.xp.cuda.runtime.getDevice())
        self.xp.cuda.runtime.setDevice(index)
        return previous

    # -- errors -----------------------------------------------------------------------------
    def memory_errors(self) -> tuple[type[BaseException], ...]:
        """Exception classes by which this backend's device reports running out of memory."""
        if self.emulated:
            return (DeviceMemoryError,)
        return (DeviceMemoryError, self.xp.cuda.memory.OutOfMemoryError)

    def device_errors(self) -> tuple[type[BaseException], ...]:
        """Exception classes of raw device errors (CUDA API/driver errors) to be translated."""
        return ()

    def describe_device(self) -> dict[str, object]:
        """The device in words for ``fastconv info``: name, compute capability, memory."""
        raise NotImplementedError

    def device_string(self) -> str:
        d = self.describe_device()
        cc = d["compute_capability"]
        return d["name"] if cc is None else f"{d['name']} sm_{cc[0]}{cc[1]}"

    def gemm_description(self) -> str:
        return self.gemm.describe()

    # -- primitives, delegated to the backend's kernel modules ------------------------------
    def matmul(self, a, b, trans_a=False, trans_b=False):
        return self.gemm.matmul(self, a, b, trans_a, trans_b)

    def max_pool2d_forward(self, x, geom, with_argmax=True):
        return self.pool.max_forward(self, x, geom, with_argmax)

    def max_pool2d_backward(self, dy, argmax, geom):
        return self.pool.max_backward(self, dy, argmax, geom)

    def avg_pool2d_forward(self, x, geom):
        return self.pool.avg_forward(self, x, geom)

    def avg_pool2d_backward(self, dy, geom):
        return self.pool.avg_backward(self, dy, geom)

    def bias_activation(self, y, b, activation):
        return self.elementwise.bias_activation(self, y, b, activation)

    def epilogue_backward(self, dy, y, activation, bias):
        return self.elementwise.epilogue_backward(self, dy, y, activation, bias)

    def adam_update(self, param, grad, m, v, lr_t, beta_1, beta_2, epsilon):
        self.elementwise.adam_update(self, param, grad, m, v, lr_t, beta_1, beta_2, epsilon)

    def random_uniform(self, shape, dtype):
        return self.elementwise.random_uniform(self, shape, dtype)

    def batch_norm_statistics(self, x):
        return self.normalization.batch_norm_statistics(self, x)

    def batch_norm_forward(self, x, gamma, beta, mean, var, eps):
        return self.normalization.batch_norm_forward(self, x, gamma, beta, mean, var, eps)

    def batch_norm_backward(self, dy, x, gamma, mean, var, eps, training):
        return self.normalization.batch_norm_backward(self, dy, x, gamma, mean, var, eps,
                                                      training)

    def lrn_forward(self, x, radius, bias, alpha, beta):
        return self.normalization.lrn_forward(self, x, radius, bias, alpha, beta)

    def lrn_backward(self, dy, x, y, scale, radius, alpha, beta):
        return self.normalization.lrn_backward(self, dy, x, y, scale, radius, alpha, beta)
