"""What every backend offers: a fixed list of primitives on raw arrays.

Kernels know nothing of Tensors, layers or graphs: arrays in, arrays out. Ops in
``fastconv.functional`` call these primitives and never branch on a backend's name.

Layouts: activations NHWC, convolution weights HWIO, dense weights (in, out). Geometries come from
``fastconv.geometry`` and carry every size and padding as ints.

A backend provides one :class:`ConvAlgorithm` per algorithm it implements (``conv_algorithms``),
built by :func:`conv_algorithm_table` from the classes its ``conv`` module defines.
Winograd's backward passes are shared here: backward-data of a stride-1 3x3 convolution is a
stride-1 3x3 convolution of ``dy`` with the flipped, transposed kernel, so it reuses the backend's
own Winograd forward kernel; backward-weight uses the backend's ``im2col`` algorithm.

Grouped convolution (``grouped_conv2d_*``) has its own primitives. Their default here,
``per_group_conv2d_*``, runs the backend's own dense primitives once per group (correct on any
backend, one launch per group); backends with grouped and depthwise kernels override them.
"""

from __future__ import annotations

import dataclasses

from ..geometry import ConvGeometry, PoolGeometry
from ..winograd import TRANSFORMS
from . import algorithms

#: Primitives every backend implements, with the same signatures. A test enforces the list.
PRIMITIVES = (
    "asarray",
    "to_host",
    "synchronize",
    "device_string",
    "gemm_description",
    "conv2d_forward",
    "prepare_conv2d_forward",
    "conv2d_backward_data",
    "conv2d_backward_weight",
    "grouped_conv2d_forward",
    "prepare_grouped_conv2d_forward",
    "grouped_conv2d_backward_data",
    "grouped_conv2d_backward_weight",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "bias_activation",
    "epilogue_backward",
    "matmul",
    "prepare_matmul",
    "random_uniform",
    "adam_update",
    "batch_norm_statistics",
    "batch_norm_forward",
    "batch_norm_backward",
    "lrn_forward",
    "lrn_backward",
)

#: Activations that can be fused into a convolution's or dense layer's epilogue.
FUSED_ACTIVATIONS = ("linear", "relu")

#: The three passes of a convolution, each with its own algorithm choice.
CONV_PASSES = ("forward", "backward_data", "backward_weight")


def group_geometry(geom: ConvGeometry, groups: int) -> ConvGeometry:
    """The dense convolution one group of a grouped convolution computes: ``geom`` (the whole
    convolution: ``c`` input and ``o`` output channels) with ``c / groups`` input and
    ``o / groups`` output channels."""
    return dataclasses.replace(geom, c=geom.c // groups, o=geom.o // groups)


def grouped_w_shape(geom: ConvGeometry, groups: int) -> tuple[int, int, int, int]:
    """The HWIO kernel of a grouped convolution: ``(kh, kw, c / groups, o)``."""
    return (geom.kh, geom.kw, geom.c // groups, geom.o)


def per_group_conv2d_forward(backend, x, w, b, geom: ConvGeometry, groups: int,
                             activation: str):
    """A grouped convolution's forward pass as ``groups`` dense ones, each on its slice of
    channels with the backend's own ``conv2d_forward`` (the 'auto' algorithm for the group's
    geometry), the outputs concatenated along the channels."""
    xp = backend.xp
    gg = group_geometry(geom, groups)
    algo = algorithms.resolve(backend, gg, x.dtype, "forward", "auto")
    cg, og = gg.c, gg.o
    outs = []
    for k in range(groups):
        xk = xp.ascontiguousarray(x[..., k * cg:(k + 1) * cg])
        wk = xp.ascontiguousarray(w[..., k * og:(k + 1) * og])
        bk = None if b is None else xp.ascontiguousarray(b[k * og:(k + 1) * og])
        outs.append(backend.conv2d_forward(xk, wk, bk, gg, algo, activation))
    return xp.ascontiguousarray(xp.concatenate(outs, axis=-1))


def per_group_conv2d_backward_data(backend, dy, w, geom: ConvGeometry, groups: int):
    """``grouped_conv2d_backward_data`` as ``groups`` dense ``conv2d_backward_data`` calls."""
    xp = backend.xp
    gg = group_geometry(geom, groups)
    algo = algorithms.resolve(backend, gg, dy.dtype, "backward_data", "auto")
    og = gg.o
    parts = [backend.conv2d_backward_data(
        xp.ascontiguousarray(dy[..., k * og:(k + 1) * og]),
        xp.ascontiguousarray(w[..., k * og:(k + 1) * og]), gg, algo) for k in range(groups)]
    return xp.ascontiguousarray(xp.concatenate(parts, axis=-1))


def per_group_conv2d_backward_weight(backend, x, dy, geom: ConvGeometry, groups: int):
    """``grouped_conv2d_backward_weight`` as ``groups`` dense ``conv2d_backward_weight``
    calls, the group kernels ``(kh, kw, c / groups, o / groups)`` side by side along O."""
    xp = backend.xp
    gg = group_geometry(geom, groups)
    algo = algorithms.resolve(backend, gg, x.dtype, "backward_weight", "auto")
    cg, og = gg.c, gg.o
    parts = [backend.conv2d_backward_weight(
        xp.ascontiguousarray(x[..., k * cg:(k + 1) * cg]),
        xp.ascontiguousarray(dy[..., k * og:(k + 1) * og]), gg, algo) for k in range(groups)]
    return xp.ascontiguousarray(xp.concatenate(parts, axis=-1))


class ConvAlgorithm:
    """One convolution algorithm on one backend: three passes on raw arrays.

    ``forward(x, w, b, geom, activation)`` -> y (NHWC); ``b`` may be None; ``activation`` is one
    of ``FUSED_ACTIVATIONS`` and is applied after the bias.
    ``backward_data(dy, w, geom)`` -> dx; ``backward_weight(x, dy, geom)`` -> dw (HWIO).
    """

    name = "?"

    def __init__(self, backend: Backend):
        self.backend = backend

    def forward(self, x, w, b, geom: ConvGeometry, activation: str):
        raise NotImplementedError

    def backward_data(self, dy, w, geom: ConvGeometry):
        raise NotImplementedError

    def backward_weight(self, x, dy, geom: ConvGeometry):
        raise NotImplementedError

    def backward_data_by_forward(self, dy, w, geom: ConvGeometry):
        """For stride 1 and no dilation: this algorithm's forward pass on ``dy`` with the kernel
        flipped and in/out swapped (see ``ConvGeometry.backward_data_as_forward``); None for
        other convolutions."""
        plan = geom.backward_data_as_forward()
        if plan is None:
            return None
        flipped_geom, crop_top, crop_left = plan
        xp = self.backend.xp
        w_flipped = xp.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))
        dx = self.forward(dy, w_flipped, None, flipped_geom, "linear")
        if crop_top or crop_left or dx.shape[1] != geom.h or dx.shape[2] != geom.w:
            dx = xp.ascontiguousarray(
                dx[:, crop_top:crop_top + geom.h, crop_left:crop_left + geom.w, :])
        return dx

    def prepare_forward(self, geom: ConvGeometry, activation: str):
        """``run(x, w, b, weights_key)``: :meth:`forward` for one geometry (inference plans).
        Algorithms that can work out geometry- or weight-dependent data once override this;
        ``weights_key`` changes whenever w or b change."""
        return lambda x, w, b, weights_key: self.forward(x, w, b, geom, activation)

    def prepare_pooled_forward(self, geom: ConvGeometry, activation: str, pool, kind: str):
        """Like :meth:`prepare_forward`, for the convolution followed by a pooling of ``kind``
        ('max' or 'average') over ``pool`` (a PoolGeometry of the convolution's output whose
        windows neither overlap nor pad), in one pass; its ``run`` returns the pooled output.
        None where the algorithm has no such pass (the plan then runs the two apart)."""
        return None


class WinogradAlgorithm(ConvAlgorithm):
    """Winograd F(m x m, 3x3): a backend implements ``forward``; the backward passes are shared.

    backward-data: the forward kernel on ``dy`` with ``w[::-1, ::-1].transpose(0, 1, 3, 2)``
    (see ``ConvGeometry.backward_data_as_forward``); backward-weight: the backend's im2col.
    """

    transform = None  # a fastconv.winograd.WinogradTransform

    def backward_data(self, dy, w, geom: ConvGeometry):
        return self.backward_data_by_forward(dy, w, geom)

    def backward_weight(self, x, dy, geom: ConvGeometry):
        return self.backend.conv_algorithm("im2col").backward_weight(x, dy, geom)


def conv_algorithm_table(conv) -> dict[str, type[ConvAlgorithm]]:
    """A backend's ``conv_algorithm_classes`` from its ``conv`` module: for every algorithm of
    ``algorithms.ALGORITHMS`` whose ``kernel`` class the module defines, that class, made once
    per Winograd transform (``WinogradConv`` serves "winograd", F(2x2,3x3), and "winograd4",
    F(4x4,3x3))."""
    table: dict[str, type[ConvAlgorithm]] = {}
    for spec in algorithms.ALGORITHMS.values():
        cls = getattr(conv, spec.kernel, None)
        if cls is None:
            continue
        if spec.transform is not None:
            transform = TRANSFORMS[spec.transform]
            label = f"{spec.kernel}{transform.m}x{transform.m}"
            cls = type(label, (cls,), {
                "name": spec.name, "transform": transform, "__module__": cls.__module__,
                "__qualname__": label, "__doc__": f"{spec.kernel} with {spec.scope}."})
        table[spec.name] = cls
    return table


class Backend:
    """Base class of a backend: array module, transfers and the primitives in ``PRIMITIVES``."""

    name = "?"
    #: The array module of the backend's arrays: numpy on CPU backends (and under the CUDA
    #: simulator), cupy for the GPU backends on a GPU. Code above the backends (ops' glue,
    #: losses, optimizers) may use on backend arrays only what NumPy and CuPy both offer:
    #: ``xp.ndarray`` (isinstance checks), array creation (``asarray``, ``zeros``, ``ones``,
    #: ``full``, ``arange``, ``*_like``, ``ascontiguousarray``), element-wise math and
    #: comparisons (operators, ``exp``, ``log``, ``sqrt``, ``tanh``, ``abs``, ``maximum``,
    #: ``minimum``, ``clip``, ``where``), reductions with ``axis``/``keepdims`` (``.sum``,
    #: ``.max``, ``.mean``), ``matmul``, shape functions (``reshape``, ``transpose``,
    #: ``moveaxis``, ``swapaxes``, ``broadcast_to``, ``concatenate``, ``split``), basic and
    #: integer-array indexing, in-place operators and ``out=``. Never ``np.*`` functions,
    #: ``np.asarray``, ``.tolist()``, ``float()`` or ``int()`` of a backend array: host values
    #: come through :meth:`to_host` (``Tensor.numpy()``, ``Tensor.item()``).
    xp = None
    dtypes = ("float32", "float64")
    #: whether ``auto`` may time this backend's algorithms (see fastconv.backends.algorithms)
    autotune = True
    #: ``auto`` times ``direct`` only up to this many products per output (C*KH*KW), beyond
    #: which it is known to lose on this backend; None: no limit
    direct_tuning_max_products: int | None = None
    #: inference runs large batches in chunks whose largest activation takes about this many
    #: bytes (cache-sized on CPUs); 0: whole batches (device backends)
    inference_chunk_bytes = 0
    #: a backend on the same memory that compiles nothing, predicting while this backend's
    #: kernels compile in the background (fastconv.warmup); None: compile on first use
    compile_fallback: str | None = None

    def __init__(self):
        self._algorithms: dict[str, ConvAlgorithm] = {}

    def compile_last_first(self, run) -> None:
        """Compile the kernels that ``run()`` uses, the last used first, without running them:
        a process running the same work compiles them in their order of use, so the two meet in
        the middle (fastconv.warmup). Backends that compile nothing do nothing."""

    def runs_from_cache(self, run) -> bool:
        """Call ``run()`` only if every kernel it uses is compiled, in this process or in the
        on-disk cache; True if it ran, False where a kernel would have to be compiled (then
        nothing was compiled, and ``run`` stopped there). Backends that compile nothing run
        it."""
        run()
        return True

    def compile_variants(self, run) -> None:
        """Call ``run()`` so that every variant of the kernels it uses gets compiled (backends
        with size-dependent variants run it once per variant)."""
        run()

    def __reduce__(self):
        """Backends pickle by name: unpickling gives the receiving process's backend of that
        name (Tensors and models hold their backend)."""
        from . import get_backend

        return (get_backend, (self.name,))

    # -- arrays ---------------------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """A backend array (C-contiguous) from host data or a backend array; scalars stay 0-d
        (``ascontiguousarray`` alone would turn them into shape (1,))."""
        a = self.xp.asarray(a, dtype=dtype)
        return a if a.flags.c_contiguous else self.xp.ascontiguousarray(a)

    def to_host(self, a):
        """A NumPy array with the contents of backend array ``a``."""
        raise NotImplementedError

    def synchronize(self, a=None):
        """Wait until the work producing ``a`` is done (device backends); returns ``a``."""
        return a

    def select_device(self, index: int) -> int | None:
        """Make device ``index`` current (``'name:index'``); returns the previous one, or None
        for backends with nothing to select (the GPU backends override this)."""
        return None

    def num_threads(self) -> int:
        """Threads the backend's kernels use."""
        return 1

    def set_num_threads(self, n: int) -> None:
        """Use ``n`` threads in the backend's kernels (where it has a choice)."""

    def device_string(self) -> str:
        """The device in autotuning cache keys besides the host CPU: '' for CPU backends; a GPU
        backend gives its device name and compute capability."""
        return ""

    def gemm_description(self) -> str:
        """The matrix-multiply engine behind ``matmul`` and im2col, in words (diagnostics:
        ``fastconv info``, benchmark reports); '' when the backend names none."""
        return ""

    # -- convolution ------------------------------------------------------------------------
    #: algorithm name -> ConvAlgorithm subclass; filled by each backend.
    conv_algorithm_classes: dict[str, type[ConvAlgorithm]] = {}

    @property
    def conv_algorithms(self) -> tuple[str, ...]:
        return tuple(self.conv_algorithm_classes)

    def conv_algorithm(self, name: str) -> ConvAlgorithm:
        algo = self._algorithms.get(name)
        if algo is None:
            algo = self._algorithms[name] = self.conv_algorithm_classes[name](self)
        return algo

    def heuristic_conv_algorithm(self, geom: ConvGeometry, conv_pass: str,
                                 candidates: tuple[str, ...]) -> str:
        """The algorithm ``auto`` picks without measuring; backends refine this."""
        return "im2col" if "im2col" in candidates else candidates[0]

    def conv2d_forward(self, x, w, b, geom: ConvGeometry, algo: str, activation: str = "linear"):
        """NHWC x HWIO (+ bias, + fused activation) -> NHWC."""
        return self.conv_algorithm(algo).forward(x, w, b, geom, activation)

    def prepare_conv2d_forward(self, geom: ConvGeometry, algo: str, activation: str):
        """``run(x, w, b, weights_key)``: ``conv2d_forward`` for one geometry, with everything
        that depends only on the geometry (and, per ``weights_key``, on the weights) worked out
        once; inference plans use it. ``weights_key`` changes whenever w or b change."""
        return self.conv_algorithm(algo).prepare_forward(geom, activation)

    def prepare_conv2d_pool_forward(self, geom: ConvGeometry, algo: str, activation: str, pool,
                                    kind: str):
        """``prepare_conv2d_forward`` with the pooling after the convolution in the same pass
        (see ``ConvAlgorithm.prepare_pooled_forward``); None where ``algo`` has no such
        pass."""
        return self.conv_algorithm(algo).prepare_pooled_forward(geom, activation, pool, kind)

    def conv2d_backward_data(self, dy, w, geom: ConvGeometry, algo: str):
        """Gradient of the convolution with respect to its input."""
        return self.conv_algorithm(algo).backward_data(dy, w, geom)

    def conv2d_backward_weight(self, x, dy, geom: ConvGeometry, algo: str):
        """Gradient of the convolution with respect to its HWIO kernel."""
        return self.conv_algorithm(algo).backward_weight(x, dy, geom)

    # -- grouped convolution ------------------------------------------------------------------
    # ``geom`` describes the whole convolution (``c`` = C_in, ``o`` = C_out channels); ``w`` is
    # HWIO with ``I = C_in / groups`` (Keras's ``Conv2D(groups=g)`` kernel): output channels
    # ``k * o/groups ... (k+1) * o/groups - 1`` (group k) see input channels ``k * c/groups ...``.
    # Depthwise convolution is ``groups == c``: Keras's ``DepthwiseConv2D`` kernel (kh, kw, C, M)
    # reshaped to (kh, kw, 1, C*M), output channel ``c*M + m``. The defaults below compose the
    # backend's dense primitives per group (``per_group_conv2d_*``).

    def grouped_conv2d_forward(self, x, w, b, geom: ConvGeometry, groups: int,
                               activation: str = "linear"):
        """NHWC x grouped HWIO (+ bias, + fused activation) -> NHWC."""
        return per_group_conv2d_forward(self, x, w, b, geom, groups, activation)

    def prepare_grouped_conv2d_forward(self, geom: ConvGeometry, groups: int, activation: str):
        """``run(x, w, b, weights_key)``: ``grouped_conv2d_forward`` for one geometry (inference
        plans); ``weights_key`` changes whenever w or b change."""
        def run(x, w, b, weights_key):
            return self.grouped_conv2d_forward(x, w, b, geom, groups, activation)

        return run

    def grouped_conv2d_backward_data(self, dy, w, geom: ConvGeometry, groups: int):
        """Gradient of the grouped convolution with respect to its input."""
        return per_group_conv2d_backward_data(self, dy, w, geom, groups)

    def grouped_conv2d_backward_weight(self, x, dy, geom: ConvGeometry, groups: int):
        """Gradient of the grouped convolution with respect to its (kh, kw, c/groups, o)
        kernel."""
        return per_group_conv2d_backward_weight(self, x, dy, geom, groups)

    # -- pooling (implemented by each backend) ----------------------------------------------
    def max_pool2d_forward(self, x, geom: PoolGeometry, with_argmax: bool = True):
        """-> (y, argmax). ``argmax`` (int32, shape of y) is the window tap ``i * pw + j`` of the
        maximum (first one on ties); padding never wins; a NaN in the window is the maximum.
        With ``with_argmax=False`` (inference) argmax is None."""
        raise NotImplementedError

    def max_pool2d_backward(self, dy, argmax, geom: PoolGeometry):
        raise NotImplementedError

    def avg_pool2d_forward(self, x, geom: PoolGeometry):
        """Mean over each window's in-bounds elements (padding is not counted, as in Keras)."""
        raise NotImplementedError

    def avg_pool2d_backward(self, dy, geom: PoolGeometry):
        raise NotImplementedError

    # -- epilogues and small fused steps ----------------------------------------------------
    def bias_activation(self, y, b, activation: str):
        """``activation(y + b)`` over the last axis, in place on ``y``; returns ``y``."""
        xp = self.xp
        if b is not None:
            y += b
        if activation == "relu":
            xp.maximum(y, 0, out=y)
        return y

    def epilogue_backward(self, dy, y, activation: str, bias: bool):
        """Backward of the epilogue ``y = activation(z + b)``: ``dz`` from the output ``y``
        (ReLU: ``dy * (y > 0)``), and ``db`` (sums of ``dz`` over every axis but the last) when
        ``bias`` is true, else None."""
        dz = dy * (y > 0) if activation == "relu" else dy
        db = dz.reshape(-1, dz.shape[-1]).sum(axis=0) if bias else None
        return dz, db

    def prepare_matmul(self):
        """``run(a, b, b_key)``: ``matmul(a, b)`` for a right operand that changes only when
        ``b_key`` does (weights in inference plans), so that backends may keep it prepared."""
        return lambda a, b, b_key: self.matmul(a, b)

    def matmul(self, a, b, trans_a: bool = False, trans_b: bool = False):
        """``op(a) @ op(b)`` for 2D arrays, op = transpose where asked (dense layers)."""
        return (a.T if trans_a else a) @ (b.T if trans_b else b)

    # -- normalisation (implemented by each backend) ----------------------------------------
    # Arrays are (rows, channels), C-contiguous: NHWC activations viewed with the channel axis
    # last. Per-channel vectors have shape (channels,) and the dtype of x.

    def batch_norm_statistics(self, x):
        """-> (mean, var) of each channel over the rows; ``var`` is the biased variance
        ``mean((x - mean)^2)`` (Keras's), accumulated in float64."""
        raise NotImplementedError

    def batch_norm_forward(self, x, gamma, beta, mean, var, eps: float):
        """Batch normalisation with given statistics (Ioffe & Szegedy 2015):
        ``y = (x - mean) * gamma / sqrt(var + eps) + beta``."""
        raise NotImplementedError

    def batch_norm_backward(self, dy, x, gamma, mean, var, eps: float, training: bool):
        """-> (dx, dgamma, dbeta) of :meth:`batch_norm_forward`. With ``xhat = (x - mean) *
        inv``, ``inv = 1 / sqrt(var + eps)`` and N rows: ``dbeta = sum(dy)``,
        ``dgamma = sum(dy * xhat)``; ``dx = gamma * inv * dy`` when mean and var are constants
        (inference), and ``dx = gamma * inv / N * (N dy - dbeta - xhat * dgamma)`` when they
        are the batch's own statistics (``training``)."""
        raise NotImplementedError

    def lrn_forward(self, x, radius: int, bias: float, alpha: float, beta: float):
        """Local response normalisation across channels (Krizhevsky et al. 2012; TensorFlow's
        ``local_response_normalization``) -> (y, scale):
        ``scale[c] = bias + alpha * sum(x[c']^2 for |c' - c| <= radius)``,
        ``y = x * scale^-beta``."""
        raise NotImplementedError

    def lrn_backward(self, dy, x, y, scale, radius: int, alpha: float, beta: float):
        """dx of :meth:`lrn_forward`: with ``t = dy * y / scale``,
        ``dx[c] = dy[c] * scale[c]^-beta - 2 alpha beta x[c] sum(t[c'] for |c' - c| <= radius)``."""
        raise NotImplementedError

    def random_uniform(self, shape, dtype):
        """Uniform [0, 1) samples from the seeded stream (``fastconv.utils.set_random_seed``)."""
        raise NotImplementedError

    def adam_update(self, param, grad, m, v, lr_t: float, beta_1: float, beta_2: float,
                    epsilon: float):
        """One Adam step in place (Kingma & Ba, with Keras's bias correction folded into lr_t):

        m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2);  param -= lr_t * m / (sqrt(v) + eps)
        """
        xp = self.xp
        m += (grad - m) * (1 - beta_1)
        v += (grad * grad - v) * (1 - beta_2)
        param -= lr_t * m / (xp.sqrt(v) + epsilon)
