"""Activation ops, and the other element-wise functions of one tensor (sqrt, exp, log, erf ...)
that the ``Elementwise`` layer applies by name."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..tensor import Function, Tensor
from .arithmetic import NegativeOp
from .base import as_tensor


class ReLUOp(Function):
    def forward(self, x):
        self.y = self.backend.bias_activation(x.copy(), None, "relu")
        return self.y

    def backward(self, dy):
        return (self.backend.epilogue_backward(dy, self.y, "relu", False)[0],)


def _sigmoid(xp, x):
    """``1 / (1 + exp(-x))``, written so that neither branch overflows."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class SigmoidOp(Function):
    def forward(self, x):
        self.y = _sigmoid(self.backend.xp, x)
        return self.y

    def backward(self, dy):
        return (dy * self.y * (1 - self.y),)


class TanhOp(Function):
    def forward(self, x):
        self.y = self.backend.xp.tanh(x)
        return self.y

    def backward(self, dy):
        return (dy * (1 - self.y * self.y),)


class SoftmaxOp(Function):
    def forward(self, x, *, axis):
        xp = self.backend.xp
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        self.y = e / e.sum(axis=axis, keepdims=True)
        self.axis = axis
        return self.y

    def backward(self, dy):
        y = self.y
        return (y * (dy - (dy * y).sum(axis=self.axis, keepdims=True)),)


class LeakyReLUOp(Function):
    """``x`` where ``x >= 0``, ``negative_slope * x`` elsewhere (ONNX's LeakyRelu)."""

    def forward(self, x, *, negative_slope):
        self.slope = x.dtype.type(negative_slope)
        self.positive = x >= 0
        return self.backend.xp.where(self.positive, x, x * self.slope)

    def backward(self, dy):
        return (self.backend.xp.where(self.positive, dy, dy * self.slope),)


class ClipOp(Function):
    """``min(max(x, low), high)`` (ONNX's Clip; a None bound is no bound). The gradient passes
    where ``low <= x <= high``."""

    def forward(self, x, *, low, high):
        xp = self.backend.xp
        lo = -xp.inf if low is None else x.dtype.type(low)
        hi = xp.inf if high is None else x.dtype.type(high)
        self.inside = (x >= lo) & (x <= hi)
        return xp.minimum(xp.maximum(x, lo), hi).astype(x.dtype, copy=False)

    def backward(self, dy):
        return (self.backend.xp.where(self.inside, dy, dy.dtype.type(0)),)


class SwishOp(Function):
    """``y = x * sigmoid(x)`` (Keras's silu/swish, ONNX's ``x * Sigmoid(x)``).
    Backward: ``dy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``."""

    def forward(self, x):
        self.x, self.s = x, _sigmoid(self.backend.xp, x)
        return x * self.s

    def backward(self, dy):
        s = self.s
        return (dy * s * (1 + self.x * (1 - s)),)


class HardSigmoidOp(Function):
    """``y = clip(alpha * x + beta, 0, 1)`` (ONNX's HardSigmoid; Keras 3's ``hard_sigmoid`` is
    ``alpha = 1/6, beta = 1/2``, i.e. ``relu6(x + 3) / 6``). The gradient is ``alpha`` where
    ``0 < alpha * x + beta < 1``, 0 elsewhere."""

    def forward(self, x, *, alpha, beta):
        xp = self.backend.xp
        self.alpha = x.dtype.type(alpha)
        z = x * self.alpha + x.dtype.type(beta)
        self.inside = (z > 0) & (z < 1)
        return xp.minimum(xp.maximum(z, x.dtype.type(0)), x.dtype.type(1))

    def backward(self, dy):
        return (self.backend.xp.where(self.inside, dy * self.alpha, dy.dtype.type(0)),)


class HardSwishOp(Function):
    """``y = x * relu6(x + 3) / 6 = x * clip(x / 6 + 1/2, 0, 1)`` (Keras 3's hard_silu /
    hard_swish, ONNX's HardSwish). Backward: ``dy * (h + x / 6)`` inside ``-3 < x < 3``, ``dy *
    h`` outside (``h`` the hard sigmoid: 0 below, 1 above)."""

    def forward(self, x):
        xp = self.backend.xp
        z = x / x.dtype.type(6) + x.dtype.type(0.5)
        self.inside = (z > 0) & (z < 1)
        self.h = xp.minimum(xp.maximum(z, x.dtype.type(0)), x.dtype.type(1))
        self.x = x
        return x * self.h

    def backward(self, dy):
        xp = self.backend.xp
        slope = xp.where(self.inside, self.x / self.x.dtype.type(6), self.x.dtype.type(0))
        return (dy * (self.h + slope),)


class ELUOp(Function):
    """``y = scale * (x if x > 0 else alpha * (exp(x) - 1))`` (ELU; SELU is ``alpha =
    1.6732632...``, ``scale = 1.0507009...``). Backward: ``dy * scale`` where ``x > 0``,
    ``dy * (y + scale * alpha)`` elsewhere."""

    def forward(self, x, *, alpha, scale):
        xp = self.backend.xp
        self.alpha, self.scale = x.dtype.type(alpha), x.dtype.type(scale)
        self.positive = x > 0
        negative = self.alpha * xp.expm1(xp.minimum(x, x.dtype.type(0)))  # no overflow in exp
        self.y = xp.where(self.positive, x, negative) * self.scale
        return self.y

    def backward(self, dy):
        xp = self.backend.xp
        return (dy * xp.where(self.positive, self.scale, self.y + self.scale * self.alpha),)


class SoftplusOp(Function):
    """``y = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))``. Backward: ``dy * sigmoid(x)``."""

    def forward(self, x):
        xp = self.backend.xp
        self.x = x
        return xp.maximum(x, x.dtype.type(0)) + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, dy):
        return (dy * _sigmoid(self.backend.xp, self.x),)


# -- the error function -----------------------------------------------------------------------
#
# erf(x) for |x| < 1, from its Taylor series (alternating; at most 2 ulp of cancellation):
#     erf(x) = 2 / sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n + 1))
# and for |x| >= 1 from erfc(a) = exp(-a^2) * G(1/a) / (a sqrt(pi)), a = |x|, where
#     G(t) = sqrt(pi) a exp(a^2) erfc(a)  (G(0) = 1)
# is smooth on t in [0, 1]: its Chebyshev interpolant at 31 points of the first kind (in s = 2t - 1,
# computed with mpmath at 60 digits) is within 3e-16 of it. float32 keeps the leading terms whose
# neglected rest is below its precision.

_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)
_ERF_TAYLOR = tuple((-1) ** n * _TWO_OVER_SQRT_PI / (math.factorial(n) * (2 * n + 1))
                    for n in range(18))
_ERFC_CHEBYSHEV = (
    0.8932779551393673, -0.12781554312813076, -0.013285101755557947,
    0.006802769862487384, -0.0011361653753699376, -2.75449055802029e-05,
    7.662361086126848e-05, -2.440558078244937e-05, 3.322993563067219e-06,
    6.39369808852751e-07, -5.378399376461786e-07, 1.699295288150051e-07,
    -2.407571488809711e-08, -5.705807438995304e-09, 5.095230688714015e-09,
    -1.831157599690358e-09, 3.4113375595365577e-10, 3.4752619772446714e-11,
    -5.706505051005662e-11, 2.55659386360833e-11, -6.614924352260219e-12,
    3.8888263639786884e-13, 6.258905262792183e-13, -3.9760723769931946e-13,
    1.4119326449325871e-13, -2.711234223576175e-14, -3.6344411672197305e-15,
    5.8885832896657085e-15, -2.973189651582188e-15, 9.53552171717561e-16,
    -1.8426408057954905e-16,
)
#: terms kept per dtype: (Taylor, Chebyshev)
_ERF_TERMS = {np.dtype(np.float64): (18, 31), np.dtype(np.float32): (11, 13)}
#: |x| beyond which erfc(|x|) is 0 in float64 (and float32)
_ERFC_ZERO = 40.0


def _erf_small(x, dtype):
    """erf(x) for |x| <= 1 (Horner in x^2)."""
    u = x * x
    coeffs = _ERF_TAYLOR[:_ERF_TERMS[dtype][0]]
    acc = coeffs[-1] * u + coeffs[-2]
    for c in coeffs[-3::-1]:
        acc = acc * u + c
    return x * acc


def _erfc_large(xp, a, dtype):
    """erfc(a) for 1 <= a <= 40 (Clenshaw's recurrence for the Chebyshev series of G)."""
    s = 2 / a - 1
    coeffs = _ERFC_CHEBYSHEV[:_ERF_TERMS[dtype][1]]
    s2 = 2 * s
    b1, b2 = s2 * coeffs[-1] + coeffs[-2], xp.full_like(s, coeffs[-1])
    for c in coeffs[-3:0:-1]:
        b1, b2 = s2 * b1 - b2 + c, b1
    g = s * b1 - b2 + coeffs[0]
    return xp.exp(-(a * a)) * g / (a * dtype.type(math.sqrt(math.pi)))


def _erf_parts(xp, x):
    """(|x| < 1, erf(x) there, erfc(|x|) elsewhere), each piece evaluated on a clipped copy of
    x so that neither overflows."""
    dtype = x.dtype
    one = dtype.type(1)
    small = xp.abs(x) < one
    inner = _erf_small(xp.clip(x, -one, one), dtype)
    tail = _erfc_large(xp, xp.clip(xp.abs(x), one, dtype.type(_ERFC_ZERO)), dtype)
    return small, inner, tail


def erf_array(xp, x):
    """``erf(x) = 2 / sqrt(pi) * integral_0^x exp(-t^2) dt`` of a float32/float64 array
    (within a few ulp of ``math.erf``; NaN stays NaN)."""
    small, inner, tail = _erf_parts(xp, x)
    return xp.where(small, inner, xp.copysign(1 - tail, x))


#: Abramowitz & Stegun 7.1.26: erf(x) = 1 - (a1 t + ... + a5 t^5) exp(-x^2), t = 1 / (1 + p x)
#: for x >= 0, absolute error below 1.5e-7 (about one float32 ulp of 1)
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf_float32_into(xp, x, out, tmp):
    """``out = erf(x)`` for a float32 array ``x`` in a dozen vectorised passes (Abramowitz &
    Stegun 7.1.26, absolute error below 1.5e-7, i.e. about one float32 ulp; ``erf_array``'s
    exact series costs ~50 passes), using ``tmp`` (shaped like ``x``) as scratch; NaN stays
    NaN. For inference plans, where float32 is the precision asked for."""
    xp.abs(x, out=tmp)
    tmp *= _AS_P
    tmp += 1
    xp.reciprocal(tmp, out=tmp)  # t
    xp.multiply(tmp, _AS_A[4], out=out)
    for c in _AS_A[3::-1]:
        out += c
        out *= tmp
    xp.multiply(x, x, out=tmp)
    xp.negative(tmp, out=tmp)
    xp.exp(tmp, out=tmp)
    out *= tmp
    xp.subtract(1, out, out=out)
    xp.copysign(out, x, out=out)
    return out


def erfc_array(xp, x):
    """``erfc(x) = 1 - erf(x)``, accurate also where it is tiny (large positive x)."""
    small, inner, tail = _erf_parts(xp, x)
    return xp.where(small, 1 - inner, xp.where(x > 0, tail, 2 - tail))


class ErfOp(Function):
    """``y = erf(x)``. Backward: ``dy * 2 / sqrt(pi) * exp(-x^2)``."""

    def forward(self, x):
        self.x = x
        return erf_array(self.backend.xp, x)

    def backward(self, dy):
        x = self.x
        return (dy * (self.backend.xp.exp(-(x * x)) * x.dtype.type(_TWO_OVER_SQRT_PI)),)


_SQRT_HALF = math.sqrt(0.5)
_TANH_GELU_K = math.sqrt(2 / math.pi)
_TANH_GELU_C = 0.044715


class GELUOp(Function):
    """The Gaussian error linear unit. Exact (``approximate=False``, Keras 3's default):
    ``y = x * Phi(x) = 0.5 * x * erfc(-x / sqrt(2))``, backward ``dy * (Phi(x) + x * phi(x))``
    with ``phi(x) = exp(-x^2 / 2) / sqrt(2 pi)``. ``approximate=True``: ``y = 0.5 * x * (1 +
    tanh(k * (x + 0.044715 x^3)))``, ``k = sqrt(2 / pi)``."""

    def forward(self, x, *, approximate):
        xp = self.backend.xp
        self.x, self.approximate = x, approximate
        half = x.dtype.type(0.5)
        if approximate:
            k, c = x.dtype.type(_TANH_GELU_K), x.dtype.type(_TANH_GELU_C)
            self.t = xp.tanh(k * (x + c * x * x * x))
            return half * x * (1 + self.t)
        self.cdf = half * erfc_array(xp, x * x.dtype.type(-_SQRT_HALF))
        return x * self.cdf

    def backward(self, dy):
        xp, x = self.backend.xp, self.x
        if self.approximate:
            k, c, t = x.dtype.type(_TANH_GELU_K), x.dtype.type(_TANH_GELU_C), self.t
            half = x.dtype.type(0.5)
            return (dy * (half * (1 + t) + half * x * (1 - t * t) * k * (1 + 3 * c * x * x)),)
        pdf = xp.exp(x * x * x.dtype.type(-0.5)) * x.dtype.type(1 / math.sqrt(2 * math.pi))
        return (dy * (self.cdf + x * pdf),)


# -- element-wise functions of one tensor -------------------------------------------------------


class SqrtOp(Function):
    """``y = sqrt(x)``. Backward: ``dy / (2 y)``."""

    def forward(self, x):
        self.y = self.backend.xp.sqrt(x)
        return self.y

    def backward(self, dy):
        return (dy / (2 * self.y),)


class SquareOp(Function):
    """``y = x^2``. Backward: ``2 x dy``."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, dy):
        return (2 * self.x * dy,)


class ExpOp(Function):
    """``y = exp(x)``. Backward: ``y dy``."""

    def forward(self, x):
        self.y = self.backend.xp.exp(x)
        return self.y

    def backward(self, dy):
        return (self.y * dy,)


class LogOp(Function):
    """``y = log(x)`` (natural). Backward: ``dy / x``."""

    def forward(self, x):
        self.x = x
        return self.backend.xp.log(x)

    def backward(self, dy):
        return (dy / self.x,)


class AbsOp(Function):
    """``y = |x|``. Backward: ``sign(x) dy`` (0 at 0)."""

    def forward(self, x):
        self.x = x
        return self.backend.xp.abs(x)

    def backward(self, dy):
        return (self.backend.xp.sign(self.x) * dy,)


class ReciprocalOp(Function):
    """``y = 1 / x``. Backward: ``-y^2 dy``."""

    def forward(self, x):
        self.y = 1 / x
        return self.y

    def backward(self, dy):
        return (-(self.y * self.y) * dy,)


class PowerOp(Function):
    """``y = x^p`` for a constant exponent ``p`` (NaN for negative x and non-integer p, as
    NumPy). Backward: ``p x^(p-1) dy`` (0 for ``p = 0``)."""

    def forward(self, x, *, exponent):
        self.x, self.p = x, x.dtype.type(exponent)
        return self.backend.xp.power(x, self.p)

    def backward(self, dy):
        if self.p == 0:
            return (dy * 0,)
        return (self.p * self.backend.xp.power(self.x, self.p - 1) * dy,)


#: The Elementwise layer's functions: name -> (Function, whether it takes an exponent).
ELEMENTWISE_FUNCTIONS = {
    "sqrt": SqrtOp, "square": SquareOp, "exp": ExpOp, "log": LogOp, "abs": AbsOp,
    "neg": NegativeOp, "reciprocal": ReciprocalOp, "erf": ErfOp, "pow": PowerOp,
}


def elementwise_op(function, exponent=None, where: str = "elementwise"):
    """``(Function, keyword arguments)`` of the element-wise function named ``function``
    (one of ``ELEMENTWISE_FUNCTIONS``); ``exponent`` is the number 'pow' raises to, and must
    be None for every other function."""
    if not isinstance(function, str) or function not in ELEMENTWISE_FUNCTIONS:
        raise ValueError(f"{where}: unknown function {function!r}; valid functions: "
                         f"{', '.join(ELEMENTWISE_FUNCTIONS)}")
    if function == "pow":
        if (not isinstance(exponent, numbers.Real) or isinstance(exponent, bool)
                or not math.isfinite(exponent)):
            raise ValueError(f"{where}: function 'pow' needs a finite number as exponent, got "
                             f"{exponent!r}")
        return PowerOp, {"exponent": float(exponent)}
    if exponent is not None:
        raise ValueError(f"{where}: exponent is only used by function 'pow', got exponent="
                         f"{exponent!r} with function {function!r}")
    return ELEMENTWISE_FUNCTIONS[function], {}


def elementwise(x, function: str, exponent=None) -> Tensor:
    """The element-wise function named ``function`` of ``x``: 'sqrt', 'square', 'exp', 'log'
    (natural), 'abs', 'neg', 'reciprocal' (``1 / x``), 'erf', or 'pow' (``x ** exponent``)."""
    op, kwargs = elementwise_op(function, exponent)
    return op.apply(as_tensor(x, f"{function} input"), **kwargs)


def sqrt(x) -> Tensor:
    return SqrtOp.apply(as_tensor(x, "sqrt input"))


def square(x) -> Tensor:
    return SquareOp.apply(as_tensor(x, "square input"))


def exp(x) -> Tensor:
    return ExpOp.apply(as_tensor(x, "exp input"))


def log(x) -> Tensor:
    """The natural logarithm."""
    return LogOp.apply(as_tensor(x, "log input"))


def abs(x) -> Tensor:  # noqa: A001 - mirrors numpy's name inside this namespace
    return AbsOp.apply(as_tensor(x, "abs input"))


def reciprocal(x) -> Tensor:
    """``1 / x``."""
    return ReciprocalOp.apply(as_tensor(x, "reciprocal input"))


def power(x, exponent) -> Tensor:
    """``x ** exponent`` for a constant number ``exponent``."""
    op, kwargs = elementwise_op("pow", exponent, "power")
    return op.apply(as_tensor(x, "power input"), **kwargs)


def erf(x) -> Tensor:
    """The error function, ``2 / sqrt(pi) * integral_0^x exp(-t^2) dt``."""
    return ErfOp.apply(as_tensor(x, "erf input"))


# -- activations --------------------------------------------------------------------------------


def leaky_relu(x, negative_slope: float = 0.3) -> Tensor:
    """``x`` for ``x >= 0``, ``negative_slope * x`` otherwise."""
    return LeakyReLUOp.apply(as_tensor(x, "leaky_relu input"), negative_slope=float(negative_slope))


def clip(x, low=None, high=None) -> Tensor:
    """``x`` clipped to ``[low, high]`` (None: unbounded on that side)."""
    if low is not None and high is not None and low > high:
        raise ValueError(f"clip: low {low!r} is greater than high {high!r}")
    return ClipOp.apply(as_tensor(x, "clip input"), low=None if low is None else float(low),
                        high=None if high is None else float(high))


def relu(x) -> Tensor:
    return ReLUOp.apply(as_tensor(x, "relu input"))


def relu6(x) -> Tensor:
    """``min(max(x, 0), 6)``."""
    return ClipOp.apply(as_tensor(x, "relu6 input"), low=0.0, high=6.0)


def sigmoid(x) -> Tensor:
    return SigmoidOp.apply(as_tensor(x, "sigmoid input"))


def tanh(x) -> Tensor:
    return TanhOp.apply(as_tensor(x, "tanh input"))


def softmax(x, axis: int = -1) -> Tensor:
    """Softmax along ``axis``; the result remembers its logits so that a following
    cross-entropy is computed stably from them (as Keras does)."""
    x = as_tensor(x, "softmax input")
    y = SoftmaxOp.apply(x, axis=axis)
    if x.ndim and axis % x.ndim == x.ndim - 1:  # cross-entropy's class axis is the last one
        y._logits = x
    return y


def linear(x) -> Tensor:
    return as_tensor(x, "linear input")


def swish(x) -> Tensor:
    """``x * sigmoid(x)`` (alias: silu)."""
    return SwishOp.apply(as_tensor(x, "swish input"))


silu = swish


def _number(value, what: str) -> float:
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value)):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def hard_sigmoid(x, alpha: float = 1 / 6, beta: float = 0.5) -> Tensor:
    """``clip(alpha * x + beta, 0, 1)``; the defaults are Keras 3's ``hard_sigmoid``,
    ``relu6(x + 3) / 6`` (ONNX's HardSigmoid defaults are ``alpha = 0.2, beta = 0.5``)."""
    return HardSigmoidOp.apply(as_tensor(x, "hard_sigmoid input"),
                               alpha=_number(alpha, "hard_sigmoid: alpha"),
                               beta=_number(beta, "hard_sigmoid: beta"))


def hard_swish(x) -> Tensor:
    """``x * relu6(x + 3) / 6`` (alias: hard_silu)."""
    return HardSwishOp.apply(as_tensor(x, "hard_swish input"))


hard_silu = hard_swish


def gelu(x, approximate: bool = False) -> Tensor:
    """``x * Phi(x)``, Phi the standard normal distribution function: exactly, ``0.5 * x * (1 +
    erf(x / sqrt(2)))`` (the default, as Keras 3's activation), or with ``approximate=True``
    ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))``."""
    if not isinstance(approximate, (bool, np.bool_)):
        raise ValueError(f"gelu: approximate must be True or False, got {approximate!r}")
    return GELUOp.apply(as_tensor(x, "gelu input"), approximate=bool(approximate))


def elu(x, alpha: float = 1.0) -> Tensor:
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""
    return ELUOp.apply(as_tensor(x, "elu input"), alpha=_number(alpha, "elu: alpha"), scale=1.0)


#: SELU's constants (Klambauer et al. 2017), as Keras and PyTorch write them
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def selu(x) -> Tensor:
    """``scale * elu(x, alpha)`` with ``alpha = 1.67326324...``, ``scale = 1.05070098...``."""
    return ELUOp.apply(as_tensor(x, "selu input"), alpha=SELU_ALPHA, scale=SELU_SCALE)


def softplus(x) -> Tensor:
    """``log(1 + exp(x))``, computed without overflow."""
    return SoftplusOp.apply(as_tensor(x, "softplus input"))
