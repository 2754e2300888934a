"""A thin autograd graph: Tensor, Function (one op = forward + backward), no_grad().

A Tensor wraps an array of the backend that made it. Calling a Function records a node when
gradients are enabled and some input requires them; ``backward()`` walks the graph in reverse
topological order (iteratively, so deep graphs do not hit Python's recursion limit) and
accumulates gradients into the leaves' ``.grad`` with ``+``.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from .backends import Backend, get_backend

_grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "fastconv_grad_enabled", default=True)


def is_grad_enabled() -> bool:
    return _grad_enabled.get()


@contextlib.contextmanager
def no_grad():
    """Run a block without recording the graph (inference, optimizer updates)."""
    token = _grad_enabled.set(False)
    try:
        yield
    finally:
        _grad_enabled.reset(token)


@contextlib.contextmanager
def enable_grad():
    token = _grad_enabled.set(True)
    try:
        yield
    finally:
        _grad_enabled.reset(token)


class Tensor:
    """An n-dimensional array of a backend, with an optional gradient."""

    __slots__ = ("data", "grad", "requires_grad", "_node", "_backend", "_logits", "name")

    def __init__(self, data, requires_grad: bool = False, *, backend: Backend | None = None,
                 name: str | None = None):
        self._backend = backend if backend is not None else get_backend()
        if isinstance(data, Tensor):
            data = data.data
        if not isinstance(data, self._backend.xp.ndarray):
            data = self._backend.asarray(data)
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node: Function | None = None
        self._logits: Tensor | None = None  # set by softmax, for a stable fused cross-entropy
        self.name = name

    # -- array-like --------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        return self.data.shape[0]

    def numpy(self) -> np.ndarray:
        """The values as a host NumPy array."""
        return self._backend.to_host(self.data)

    def item(self) -> float:
        return float(self.numpy().reshape(-1)[0]) if self.size == 1 else _not_scalar(self)

    def detach(self) -> Tensor:
        """The same values, cut from the graph."""
        return Tensor(self.data, backend=self._backend)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{grad})"

    # -- arithmetic: differentiable ops with NumPy broadcasting (fastconv.ops.arithmetic) ----
    #: NumPy defers to the reflected operators below (``array * tensor`` is a Tensor)
    __array_ufunc__ = None

    def __add__(self, other):
        return _ops().add(self, other)

    def __radd__(self, other):
        return _ops().add(other, self)

    def __sub__(self, other):
        return _ops().subtract(self, other)

    def __rsub__(self, other):
        return _ops().subtract(other, self)

    def __mul__(self, other):
        return _ops().multiply(self, other)

    def __rmul__(self, other):
        return _ops().multiply(other, self)

    def __truediv__(self, other):
        return _ops().divide(self, other)

    def __rtruediv__(self, other):
        return _ops().divide(other, self)

    def __matmul__(self, other):
        return _ops().matmul(self, other)

    def __rmatmul__(self, other):
        return _ops().matmul(other, self)

    def __neg__(self):
        return _ops().negative(self)

    def __pos__(self):
        return self

    # -- autograd ----------------------------------------------------------------------------
    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf that requires a gradient."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require gradients")
        if grad is None:
            if self.size != 1:
                raise ValueError(
                    f"backward() without a gradient needs a scalar, got shape {self.shape}")
            grad = self._backend.xp.ones_like(self.data)
        elif isinstance(grad, Tensor):
            grad = grad.data
        grads = {id(self): grad}
        for t in reversed(_topological_order(self)):
            g = grads.pop(id(t), None)
            if g is None:
                continue
            node = t._node
            if node is None:
                t.grad = g if t.grad is None else t.grad + g
                continue
            if node.__dict__.get("released"):
                raise RuntimeError(
                    "backward() through a graph whose saved values were already freed by an "
                    "earlier backward(); run the forward pass again")
            input_grads = node.backward(g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, pg, needed in zip(node.parents, input_grads, node.needs_input_grad):
                if needed and pg is not None:
                    key = id(parent)
                    grads[key] = pg if key not in grads else grads[key] + pg
            node.release()


def _ops():
    """The ops package (imported on first use: it imports this module)."""
    from . import ops

    return ops


def _not_scalar(t: Tensor):
    raise ValueError(f"item() needs a tensor with one element, got shape {t.shape}")


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors that need a gradient, each after all its inputs (iterative depth-first)."""
    order: list[Tensor] = []
    seen: set[int] = {id(root)}
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        stack.append((t, True))
        if t._node is not None:
            for parent in t._node.parents:
                if parent.requires_grad and id(parent) not in seen:
                    seen.add(id(parent))
                    stack.append((parent, False))
    return order


class Variable(Tensor):
    """A trainable weight: a leaf tensor with a name and a ``trainable`` flag. ``version``
    counts changes made through ``assign`` and optimizers, so that values derived from the
    weights (packed or transformed kernels of inference plans) know when to be rebuilt; code
    that writes into ``.data`` directly calls ``changed()``."""

    __slots__ = ("version",)

    def __init__(self, data, name: str, trainable: bool = True):
        super().__init__(data, requires_grad=trainable, name=name)
        self.version = 0

    def changed(self) -> None:
        """Record that the values changed in place."""
        self.version += 1

    @property
    def trainable(self) -> bool:
        return self.requires_grad

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self.requires_grad = bool(value)
        if not value:
            self.grad = None

    def assign(self, value) -> None:
        """Replace the values (same shape; cast to this variable's dtype). The variable keeps
        its own copy: later in-place updates never write into the caller's array."""
        value = value.data if isinstance(value, Tensor) else value
        if tuple(value.shape) != self.shape:
            raise ValueError(
                f"cannot assign a value of shape {tuple(value.shape)} to weight {self.name!r} "
                f"of shape {self.shape}")
        self.data = self._backend.asarray(value, dtype=self.dtype).copy()
        self.version += 1


def mixed_backends_message(op: str, tensors) -> str:
    """The error for an op whose input tensors live on different backends, naming them."""
    names = list(dict.fromkeys(t._backend.name for t in tensors))
    return (f"{op}: the inputs live on different backends ({' and '.join(names)}); an op runs "
            f"on one backend: move the model with Model.to(name), or make the tensors on one "
            f"backend (Tensor(t.numpy(), backend=fastconv.get_backend(name)))")


class Function:
    """One differentiable op: ``forward`` on raw arrays, ``backward`` from the output gradient.

    Subclasses save in ``forward`` only what ``backward`` needs, as attributes of ``self``.
    ``backward(grad)`` returns one gradient per input (None where ``needs_input_grad`` is False).
    """

    parents: tuple[Tensor, ...]
    needs_input_grad: tuple[bool, ...]
    backend: Backend

    def forward(self, *arrays, **kwargs):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    def release(self) -> None:
        """Drop what forward saved, once backward has run."""
        kept = {k: self.__dict__[k] for k in ("parents", "needs_input_grad", "backend")}
        self.__dict__.clear()
        self.__dict__.update(kept, released=True)

    @classmethod
    def evaluate(cls, backend: Backend, *arrays, **kwargs):
        """The forward pass on raw arrays, nothing recorded (inference plans)."""
        fn = cls()
        fn.backend = backend
        return fn.forward(*arrays, **kwargs)

    @classmethod
    def apply(cls, *inputs: Tensor, **kwargs) -> Tensor:
        fn = cls()
        backend = inputs[0]._backend
        for t in inputs[1:]:
            if t._backend is not backend:
                raise ValueError(mixed_backends_message(cls.__name__, inputs))
        fn.backend = backend
        fn.parents = inputs
        fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
        track = any(fn.needs_input_grad) and is_grad_enabled()
        out = fn.forward(*(t.data for t in inputs), **kwargs)
        result = Tensor(out, requires_grad=track, backend=backend)
        if track:
            result._node = fn
        return result
