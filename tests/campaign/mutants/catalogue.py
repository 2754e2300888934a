"""The mutants: small, realistic faults planted one at a time in a copy of the tree.

Each ``Mutant`` names a file, an exact ``search`` string that occurs exactly once in it and its
``replace``ment, what the fault is, and the tests expected to kill it: ``tests`` (paths), ``k``
(a pytest ``-k`` expression, or None) and ``env`` (``NUMBA_ENABLE_CUDASIM=1`` for the
numba-cuda kernels, ``FASTCONV_CUPY_EMULATE=1`` for the CUDA C ones). The selection is the
smallest that should kill the mutant: a mutant of the numba-cpu kernels recompiles every kernel
its tests reach (the kernel cache is keyed by the backend's sources), so those selections are
kept narrow.

Families: ``numba-cpu`` (kernels and their launchers, including a lost per-thread partial in
each reduction: keep only thread 0's), ``numba-cuda`` (kernels under Numba's simulator),
``cuda-c`` (``kernels/*.cu`` under the g++ emulation, including an out-of-bounds read in each
family of kernels: a row or column bound check dropped), ``autograd`` (``fastconv/ops``
backward passes), ``inference`` (plans: fusion, folding, bias), ``onnx`` (the importer) and
``keras`` (the Keras file readers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAMILIES = ("numba-cpu", "numba-cuda", "cuda-c", "autograd", "inference", "onnx", "keras")

#: Files of the numba-cpu backend that define no compiled kernel (host code only): a mutant
#: there leaves every kernel's machine code valid, so its run may reuse the warm kernel cache.
HOST_ONLY_FILES = ("fastconv/backends/numba_cpu/conv.py",
                   "fastconv/backends/numba_cpu/__init__.py")

#: Sources that key the numba-cpu kernel cache (``fastconv.backends.jit_cache``).
JIT_KEY_PREFIXES = ("fastconv/backends/numba_cpu/", "fastconv/geometry.py",
                    "fastconv/winograd.py", "fastconv/backends/jit_cache.py")

CUDASIM = {"NUMBA_ENABLE_CUDASIM": "1"}
CUPY_EMU = {"FASTCONV_CUPY_EMULATE": "1"}


@dataclass(frozen=True)
class Mutant:
    id: str
    family: str
    file: str
    search: str
    replace: str
    description: str
    tests: tuple
    k: str | None = None
    env: dict = field(default_factory=dict)

    @property
    def rebuilds_kernels(self) -> bool:
        """Whether the mutant changes the sources that key the numba-cpu kernel cache and
        defines compiled code (so the run needs a cold cache of its own)."""
        return self.file.startswith(JIT_KEY_PREFIXES) and self.file not in HOST_ONLY_FILES

    @property
    def keys_kernel_cache(self) -> bool:
        return self.file.startswith(JIT_KEY_PREFIXES)


def _m(id, family, file, search, replace, description, tests, k=None, env=None):
    tests = (tests,) if isinstance(tests, str) else tuple(tests)
    return Mutant(id, family, file, search, replace, description, tests, k, dict(env or {}))


NB = "fastconv/backends/numba_cpu/"
CU = "fastconv/backends/numba_cuda/"
PARALLEL_VARIANTS = "variants_match_numpy and parallel-"
#: the tests added for the survivors of the first full run
GAPS = "tests/test_mutation_gaps.py"
#: the patch tap of the numba-cuda implicit-GEMM forward (its backward-weight has the same lines)
IGEMM_FORWARD_TAP = ("ci = gk % c\n                    t = gk // c\n"
                     "                    ox = gr % ow\n"
                     "                    u = gr // ow\n"
                     "                    ih = (u % oh) * sh - pt + (t // kw_) * dh\n"
                     "                    iw = ox * sw - pl + (t % kw_) * dw\n                    ")
#: Conv2D's absorbs_norm (DepthwiseConv2D's has the same last line)
CONV_ABSORBS = ("its\n        kernel and bias (``fastconv.ops.fold_batch_norm``).\"\"\"\n"
                "        output_shape = self.compute_output_shape(input_shape)\n        ")

MUTANTS = [
    # -- numba-cpu: a lost per-thread partial in each reduction ---------------------------------
    _m("nbcpu-direct-bw-partial", "numba-cpu", NB + "conv.py",
       "conv_direct.backward_weight(g.flops, _c(x), _c(dy), g.astuple(), partial)\n"
       "        return partial.sum(axis=0)",
       "conv_direct.backward_weight(g.flops, _c(x), _c(dy), g.astuple(), partial)\n"
       "        return partial[0]",
       "direct backward-weight keeps only thread 0's partial kernel",
       "tests/test_numba_cpu.py", PARALLEL_VARIANTS),
    _m("nbcpu-im2col-bw-partial", "numba-cpu", NB + "conv.py",
       "dwt = partial.sum(axis=0)[:g.o, :k]", "dwt = partial[0][:g.o, :k]",
       "im2col backward-weight keeps only thread 0's partial kernel",
       "tests/test_numba_cpu.py", PARALLEL_VARIANTS),
    _m("nbcpu-im2col-bw1-partial", "numba-cpu", NB + "conv.py",
       "return _c(partial.sum(axis=0)[:k, :g.o]).reshape(g.w_shape)",
       "return _c(partial[0][:k, :g.o]).reshape(g.w_shape)",
       "im2col backward-weight of one input channel keeps only thread 0's partial",
       ("tests/test_numba_cpu.py", "tests/campaign/test_parity.py", GAPS),
       f"({PARALLEL_VARIANTS}) or (test_conv2d_parity and numba-cpu and im2col) "
       "or single_channel_backward_weight"),
    _m("nbcpu-grouped-bw-partial", "numba-cpu", NB + "conv_grouped.py",
       "    return partial.sum(axis=0)", "    return partial[0]",
       "grouped backward-weight keeps only thread 0's partial kernel",
       "tests/test_grouped_conv.py", "serial_and_parallel_kernels and parallel-"),
    _m("nbcpu-bias-grad-partial", "numba-cpu", NB + "__init__.py",
       "(partial.sum(axis=0) if bias else None)", "(partial[0] if bias else None)",
       "the bias gradient (epilogue backward) keeps only thread 0's column sums",
       ("tests/test_numba_cpu.py", GAPS), f"({PARALLEL_VARIANTS}) or bias_gradient_sums"),
    _m("nbcpu-bn-stats-partial", "numba-cpu", NB + "__init__.py",
       "mean = p1.sum(axis=0) / rows", "mean = p1[0] / rows",
       "batch-norm statistics: the mean keeps only thread 0's partial sums",
       ("tests/test_gradients.py", "tests/test_layers.py", GAPS),
       "(numba-cpu and batch_norm) or batch_norm_sums"),
    _m("nbcpu-bn-grad-partial", "numba-cpu", NB + "__init__.py",
       "s_dy, s_dyx = p_dy.sum(axis=0), p_dyx.sum(axis=0)", "s_dy, s_dyx = p_dy[0], p_dyx[0]",
       "batch-norm backward: sum(dy) and sum(dy*(x-mean)) keep only thread 0's partials",
       ("tests/test_gradients.py", "tests/test_layers.py", GAPS),
       "(numba-cpu and batch_norm) or batch_norm_sums"),
    # -- numba-cpu: kernels -----------------------------------------------------------------------
    _m("nbcpu-direct-fwd-col-bound", "numba-cpu", NB + "conv_direct.py",
       "if iw < 0 or iw >= wd:\n                    continue\n                for k in range(c):",
       "if iw < 0:\n                    continue\n                for k in range(c):",
       "direct forward reads past the right edge of the input row",
       "tests/test_conv_kernels.py", "test_conv_matches_oracle and numba-cpu and direct"),
    _m("nbcpu-direct-bwdata-stride", "numba-cpu", NB + "conv_direct.py",
       "if numw < 0 or numw % sw != 0:", "if numw < 0:",
       "direct backward-data takes taps that no output column reaches (stride > 1)",
       "tests/test_conv_kernels.py", "test_conv_matches_oracle and numba-cpu and direct"),
    _m("nbcpu-im2col-pad-col", "numba-cpu", NB + "conv_im2col.py",
       "if 0 <= ih < h and 0 <= iw < w:\n                    ptrs[tap * mr + r] = base",
       "if 0 <= ih < h:\n                    ptrs[tap * mr + r] = base",
       "im2col patch pointers ignore the left/right padding",
       "tests/test_conv_kernels.py", "test_conv_matches_oracle and numba-cpu and im2col"),
    _m("nbcpu-im2col-next-origin", "numba-cpu", NB + "conv_im2col.py",
       "    x0 += sw\n    if x0 == ow * sw - pl:", "    x0 += sw\n    if x0 == ow * sw:",
       "im2col's step to the next output pixel forgets the left padding when wrapping a row",
       "tests/test_conv_kernels.py", "test_conv_matches_oracle and numba-cpu and im2col"),
    _m("nbcpu-winograd-filter-index", "numba-cpu", NB + "conv_winograd.py",
       "row[m] += coef * tmp[a, j, m]", "row[m] += coef * tmp[b, j, m]",
       "Winograd filter transform indexes the half-transformed filter by the wrong row",
       "tests/test_conv_kernels.py", "test_conv_matches_oracle and numba-cpu and winograd"),
    _m("nbcpu-grouped-bw-group-offset", "numba-cpu", NB + "conv_grouped.py",
       "xs = xv[gi * cg + cl]", "xs = xv[cl]",
       "grouped backward-weight reads group 0's input channels for every group",
       "tests/test_grouped_conv.py", "test_grouped_primitives_match_oracle and numba-cpu"),
    _m("nbcpu-pool-max-nan", "numba-cpu", NB + "pool.py",
       "if v > b or (v != v and b == b):", "if v > b:",
       "max pooling drops NaN (a NaN never wins the window)",
       "tests/test_pool_kernels.py", "numba-cpu and max_pool"),
    _m("nbcpu-pool-max-first-tap", "numba-cpu", NB + "pool.py",
       "first_i = max(pt - p * sh, 0)", "first_i = 0",
       "max pooling: a window of -inf records a padding row as its argmax",
       ("tests/test_pool_kernels.py", "tests/campaign/test_parity.py", GAPS),
       "(numba-cpu and max_pool) or (pool2d_parity and numba-cpu-max) or minus_inf"),
    _m("nbcpu-pool-avg-count", "numba-cpu", NB + "pool.py",
       "inv = 1.0 / ((i1 - i0) * (j1 - j0))\n        for k in range(c):",
       "inv = 1.0 / (ph * pw)\n        for k in range(c):",
       "average pooling forward counts the padding taps",
       "tests/test_pool_kernels.py", "numba-cpu and avg"),
    _m("nbcpu-gemm-row-block", "numba-cpu", NB + "gemm.py",
       "r1 = min(m, r0 + rows_per)", "r1 = min(m, r0 + rows_per - 1)",
       "GEMM: each parallel task leaves out the last row of its block",
       "tests/test_numba_cpu.py", "matmul_every_transpose"),
    _m("nbcpu-gemm-store-edge-col", "numba-cpu", NB + "gemm.py",
       "            for j in range(cols):\n                c[base + j] = tile[r, j]",
       "            for j in range(cols - 1):\n                c[base + j] = tile[r, j]",
       "GEMM edge tiles leave out their last column",
       "tests/test_numba_cpu.py", "matmul_every_transpose"),
    _m("nbcpu-pack-panels-trans", "numba-cpu", NB + "microkernel.py",
       "bp[base + j] = b[j0 + j, kk]", "bp[base + j] = b[j0 + j, 0]",
       "packing a transposed B panel repeats B's first column",
       "tests/test_numba_cpu.py", "matmul_every_transpose"),
    _m("nbcpu-bn-dx-center", "numba-cpu", NB + "normalization.py",
       "b[k] * (x[r, k] - mean[k]) + c[k]", "b[k] * x[r, k] + c[k]",
       "batch-norm dx forgets to centre x",
       "tests/test_gradients.py", "numba-cpu and batch_norm_training"),
    _m("nbcpu-relu-grad-ge", "numba-cpu", NB + "elementwise.py",
       "dz[r, k] = dy[r, k] if y[r, k] > 0 else 0", "dz[r, k] = dy[r, k] if y[r, k] >= 0 else 0",
       "ReLU's gradient passes where the output was clipped to 0",
       "tests/test_gradients.py", "test_gradient and numba-cpu and relu"),
    # -- numba-cuda (simulator) -------------------------------------------------------------------
    _m("nbcuda-direct-fwd-col-bound", "numba-cuda", CU + "conv_direct.py",
       "if iw < 0 or iw >= wd:\n                    continue\n                for ci in range(c):",
       "if iw < 0:\n                    continue\n                for ci in range(c):",
       "direct forward reads past the right edge of the input row",
       "tests/test_conv_kernels.py", "test_conv_matches_oracle and direct", CUDASIM),
    _m("nbcuda-direct-bw-weight-bound", "numba-cuda", CU + "conv_direct.py",
       "if 0 <= iw < wd:\n                        acc[0] +=",
       "if 0 <= iw:\n                        acc[0] +=",
       "direct backward-weight reads past the right edge of the input row",
       "tests/test_conv_kernels.py", "test_conv_matches_oracle and direct", CUDASIM),
    _m("nbcuda-pool-avg-count", "numba-cuda", CU + "pool.py",
       "y[img, p, q, k] = acc / y.dtype.type(max(count, 1))",
       "y[img, p, q, k] = acc / y.dtype.type(ph * pw)",
       "average pooling forward counts the padding taps",
       "tests/test_pool_kernels.py", "avg", CUDASIM),
    _m("nbcuda-pool-max-bwd-pad", "numba-cuda", CU + "pool.py",
       "if argmax[img, p, q, k] == i * pw + (v + pl - q * sw):",
       "if argmax[img, p, q, k] == i * pw + (v - q * sw):",
       "max pooling backward forgets the left padding when matching the argmax",
       "tests/test_pool_kernels.py", "max_pool", CUDASIM),
    _m("nbcuda-colsum-block-partial", "numba-cuda", CU + "elementwise.py",
       "s = sm[0, tx]\n        for i in range(1, cuda.blockDim.y):\n            s += sm[i, tx]\n"
       "        partial[cuda.blockIdx.y, k] = s",
       "s = sm[0, tx]\n        partial[cuda.blockIdx.y, k] = s",
       "column sums (bias gradient, batch norm): a block keeps only thread row 0's sum",
       "tests/test_gradients.py", "test_gradient and (dense_bias_relu or batch_norm_training)",
       CUDASIM),
    _m("nbcuda-sum-partials-rows", "numba-cuda", CU + "elementwise.py",
       "for r in range(ty, rows, cuda.blockDim.y):\n                acc += partial[r, k]",
       "for r in range(ty, min(rows, 1), cuda.blockDim.y):\n                acc += partial[r, k]",
       "second pass of the column sums keeps only block row 0's partial sums",
       "tests/test_gradients.py", "test_gradient and (dense_bias_relu or batch_norm_training)",
       CUDASIM),
    _m("nbcuda-gemm-k-bound", "numba-cuda", CU + "gemm.py",
       "if gc < n and gk < k:", "if gc < n:",
       "tiled GEMM loads B rows past the inner dimension",
       "tests/test_numba_cuda_kernels.py", "gemm or matmul", CUDASIM),
    _m("nbcuda-igemm-col-bound", "numba-cuda", CU + "conv_implicit_gemm.py",
       IGEMM_FORWARD_TAP + "if 0 <= ih < h and 0 <= iw < wd:",
       IGEMM_FORWARD_TAP + "if 0 <= ih < h:",
       "implicit-GEMM forward reads patch columns in the left/right padding",
       "tests/test_numba_cuda_kernels.py", "implicit_gemm_forward", CUDASIM),
    _m("nbcuda-bn-grad-center", "numba-cuda", CU + "normalization.py",
       "s2 += g * (np.float64(x[r, k]) - mk)", "s2 += g * np.float64(x[r, k])",
       "batch-norm backward sums dy * x instead of dy * (x - mean)",
       "tests/test_gradients.py", "test_gradient and batch_norm_training", CUDASIM),
    # -- CUDA C (g++ emulation) -------------------------------------------------------------------
    _m("cu-direct-oob-col", "cuda-c", "kernels/conv_direct.cu",
       "if (iw < 0 || iw >= g.w) continue;", "if (iw < 0) continue;",
       "direct forward: the column bound check dropped (reads past the row)",
       "tests/test_conv_kernels.py", "test_conv_matches_oracle and direct", CUPY_EMU),
    _m("cu-igemm-oob-row", "cuda-c", "kernels/conv_implicit_gemm.cu",
       "As[kk][mm] = (m < rows && k < k_end) ? fc_patch(x, g, m, k) : T(0);",
       "As[kk][mm] = (k < k_end) ? fc_patch(x, g, m, k) : T(0);",
       "implicit-GEMM forward: the row bound dropped (patch rows past the last pixel read)",
       "tests/test_cupy_sanitizers.py", "address", CUPY_EMU),
    _m("cu-gemm-oob-row", "cuda-c", "kernels/gemm.cu",
       "As[kk][mm] = (m < rows && k < k_end) ? (trans",
       "As[kk][mm] = (k < k_end) ? (trans",
       "GEMM: the row bound of A's tile dropped (rows past M read)",
       "tests/test_cupy_sanitizers.py", "address", CUPY_EMU),
    _m("cu-winograd-oob-row", "cuda-c", "kernels/common.cuh",
       "if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) return T(0);",
       "if (ih < 0 || iw < 0 || iw >= g.w) return T(0);",
       "padded input read (Winograd input transform, direct backward-weight, implicit GEMM): "
       "the bottom bound dropped",
       "tests/test_conv_kernels.py", "test_conv_matches_oracle and winograd", CUPY_EMU),
    _m("cu-pool-oob-row", "cuda-c", "kernels/pool.cu",
       "if (ih < 0 || ih >= g.h) continue;", "if (ih < 0) continue;",
       "max pooling forward: the bottom bound dropped (reads past the image)",
       "tests/test_pool_kernels.py", "max_pool", CUPY_EMU),
    _m("cu-elementwise-oob-col", "cuda-c", "kernels/elementwise.cu",
       "    if (k < ch) {\n        for (int r = r0 + threadIdx.y; r < r1; r += blockDim.y) {\n"
       "            const int i = r * ch + k;",
       "    {\n        for (int r = r0 + threadIdx.y; r < r1; r += blockDim.y) {\n"
       "            const int i = r * ch + k;",
       "epilogue backward: threads past the last channel read (and write) past the row",
       "tests/test_cupy_sanitizers.py", "address", CUPY_EMU),
    _m("cu-norm-oob-col", "cuda-c", "kernels/normalization.cu",
       "    if (k < ch) {\n        for (int r = r0 + threadIdx.y; r < r1; r += blockDim.y) terms",
       "    {\n        for (int r = r0 + threadIdx.y; r < r1; r += blockDim.y) terms",
       "normalisation column sums: threads past the last channel read past the row",
       "tests/test_cupy_sanitizers.py", "address", CUPY_EMU),
    _m("cu-direct-bw-block-partial", "cuda-c", "kernels/conv_direct.cu",
       "if (r_begin < r_end) atomicAdd(&dwgt[idx], acc);",
       "if (r_begin < r_end && blockIdx.y == 0) atomicAdd(&dwgt[idx], acc);",
       "direct backward-weight keeps only the first block row's partial sums",
       "tests/test_cupy_kernels.py", "backward_weight_split", CUPY_EMU),
    _m("cu-norm-block-partial", "cuda-c", "kernels/normalization.cu",
       "for (int t = 1; t < blockDim.y; ++t) {\n            a1 +=",
       "for (int t = 1; t < 1; ++t) {\n            a1 +=",
       "normalisation column sums: a block keeps only thread row 0's partial sums",
       "tests/test_gradients.py", "test_gradient and batch_norm_training", CUPY_EMU),
    _m("cu-bias-grad-block-partial", "cuda-c", "kernels/elementwise.cu",
       "for (int t = 1; t < blockDim.y; ++t) acc += partial",
       "for (int t = 1; t < 1; ++t) acc += partial",
       "bias gradient: a block keeps only thread row 0's partial sums",
       "tests/test_gradients.py", "test_gradient and (dense_bias_relu or conv2d_bias_relu)",
       CUPY_EMU),
    # -- autograd (fastconv/ops) ------------------------------------------------------------------
    _m("ops-dense-dw-unmasked", "autograd", "fastconv/ops/dense.py",
       "dw = be.matmul(self.x2, dz, trans_a=True)",
       "dw = be.matmul(self.x2, dy.reshape(-1, dy.shape[-1]), trans_a=True)",
       "dense backward-weight uses dy, not the activation-masked dz",
       "tests/test_gradients.py", "test_gradient and numpy-dense"),
    _m("ops-divide-db-sign", "autograd", "fastconv/ops/arithmetic.py",
       "db = unbroadcast(-dy * self.y / self.b", "db = unbroadcast(dy * self.y / self.b",
       "divide: the denominator's gradient has the wrong sign",
       "tests/test_gradients.py", "test_gradient and numpy-divide"),
    _m("ops-tanh-grad", "autograd", "fastconv/ops/activation.py",
       "return (dy * (1 - self.y * self.y),)", "return (dy * (1 - self.y),)",
       "tanh's gradient uses 1 - y instead of 1 - y^2",
       "tests/test_gradients.py", "test_gradient and numpy-tanh"),
    _m("ops-softmax-grad", "autograd", "fastconv/ops/activation.py",
       "return (y * (dy - (dy * y).sum(axis=self.axis, keepdims=True)),)",
       "return (y * (dy - dy.sum(axis=self.axis, keepdims=True)),)",
       "softmax's gradient subtracts sum(dy) instead of sum(dy * y)",
       "tests/test_gradients.py", "test_gradient and numpy-softmax"),
    _m("ops-leaky-relu-grad", "autograd", "fastconv/ops/activation.py",
       "return (self.backend.xp.where(self.positive, dy, dy * self.slope),)",
       "return (self.backend.xp.where(self.positive, dy, dy),)",
       "leaky ReLU's gradient forgets the negative slope",
       "tests/test_gradients.py", "test_gradient and numpy-leaky"),
    _m("ops-conv-dw-unmasked", "autograd", "fastconv/ops/conv.py",
       "                self.x, dz, g, algos.resolve(be, g, dz.dtype, \"backward_weight\", "
       "self.algo))\n                if groups == 1",
       "                self.x, dy, g, algos.resolve(be, g, dz.dtype, \"backward_weight\", "
       "self.algo))\n                if groups == 1",
       "conv backward-weight uses dy, not the activation-masked dz",
       "tests/test_gradients.py", "test_gradient and numpy-conv2d_bias_relu"),
    _m("ops-layer-norm-dx-mean", "autograd", "fastconv/ops/normalization.py",
       "dx = self.r * (g - g.mean(axis=axes, keepdims=True)\n",
       "dx = self.r * (g\n",
       "layer norm's dx forgets to subtract the mean of the gradient",
       "tests/test_gradients.py", "test_gradient and numpy-layer_norm"),
    _m("ops-fold-bn-bias-scale", "autograd", "fastconv/ops/normalization.py",
       "((bias - mean) * scale + beta)", "((bias - mean) + beta)",
       "fold_batch_norm forgets to scale the folded bias",
       "tests/test_inference.py", "numpy and batch_norm"),
    # -- inference plans --------------------------------------------------------------------------
    _m("inf-fold-after-activation", "inference", "fastconv/layers/convolutional.py",
       CONV_ABSORBS + "return self.activation == \"linear\" and norm.folded_norm_terms(",
       CONV_ABSORBS + "return norm.folded_norm_terms(",
       "plans fold a batch norm into a convolution that has an activation",
       ("tests/test_inference.py", "tests/test_grouped_conv.py"),
       "numpy or batch_norm_folds"),
    _m("inf-dense-bias-dropped", "inference", "fastconv/layers/core.py",
       "y = backend.bias_activation(y, None if bias is None else bias.data,",
       "y = backend.bias_activation(y, None,",
       "the Dense inference step drops the bias",
       "tests/test_inference.py", "numpy and predict_matches"),
    _m("inf-fold-stale", "inference", "fastconv/layers/convolutional.py",
       "if entry is None or entry[0] != key:", "if entry is None:",
       "a folded kernel is not refolded after the weights change",
       "tests/test_inference.py", "numpy"),
    _m("inf-sole-consumer", "inference", "fastconv/inference.py",
       "return after[0] if len(after) == 1 and not after[0].multi else None",
       "return after[0] if after and not after[0].multi else None",
       "graph plans fold a batch norm into a convolution whose output has other readers",
       "tests/test_inference.py", "numpy"),
    # -- ONNX importer ----------------------------------------------------------------------------
    _m("onnx-conv-bias-dropped", "onnx", "fastconv/onnx/_import.py",
       "weights.append(np.asarray(b, np.float32).reshape(-1))",
       "weights.append(np.zeros(np.size(b), np.float32))",
       "Conv's bias is dropped (zeros loaded)",
       "tests/test_onnx_import.py", "pytorch_exports_match_pytorch"),
    _m("onnx-gemm-bias-dropped", "onnx", "fastconv/onnx/_import.py",
       "weights.append(np.asarray(b, np.float32))\n        self.pending_weights",
       "weights.append(np.zeros(np.shape(b), np.float32))\n        self.pending_weights",
       "Gemm/MatMul's bias is dropped (zeros loaded)",
       "tests/test_onnx_import.py", "pytorch_exports_match_pytorch"),
    _m("onnx-flatten-hw-swap", "onnx", "fastconv/onnx/_import.py",
       "w = w.reshape(c, h, wd, -1).transpose(1, 2, 0, 3)",
       "w = w.reshape(c, h, wd, -1).transpose(2, 1, 0, 3)",
       "the Dense rows after a flatten are reordered with H and W swapped",
       "tests/test_onnx_import.py", "pytorch_exports_match_pytorch"),
    _m("onnx-conv-kernel-transpose", "onnx", "fastconv/onnx/_import.py",
       "weights = [w.transpose(2, 3, 1, 0)]", "weights = [w.transpose(3, 2, 1, 0)]",
       "Conv's OIHW kernel is transposed to WHIO instead of HWIO (kernel rows and columns "
       "swapped)",
       "tests/test_onnx_import.py", "pytorch_exports_match_pytorch"),
    _m("onnx-transpose-skipped", "onnx", "fastconv/onnx/_import.py",
       "return self.apply(L.Permute(tuple(perm[1:]), name=self.layer_name(node)), x)",
       "return x",
       "a Transpose that is not a layout change is skipped",
       ("tests/test_onnx_import.py", "tests/test_onnx_modern.py", GAPS),
       "pytorch_exports_match_pytorch or channel_shuffle or modern_block or onnx_transpose"),
    _m("onnx-conv-pads-order", "onnx", "fastconv/onnx/_import.py",
       "pads = (p[0], p[2], p[1], p[3])", "pads = (p[0], p[1], p[2], p[3])",
       "Conv/pool pads read as (top, left, bottom, right) in the wrong order",
       "tests/test_onnx_import.py", "pytorch_exports_match_pytorch"),
    _m("onnx-pad-op-swap", "onnx", "fastconv/onnx/_import.py",
       "padding = ((before.get(2, 0), after.get(2, 0)), (before.get(3, 0), after.get(3, 0)))",
       "padding = ((after.get(2, 0), before.get(2, 0)), (before.get(3, 0), after.get(3, 0)))",
       "the Pad op swaps the top and bottom padding",
       "tests/test_onnx_import.py", "pytorch_exports_match_pytorch"),
    _m("onnx-gemm-alpha-ignored", "onnx", "fastconv/onnx/_import.py",
       "            w = w * np.float32(alpha)", "            w = w",
       "Gemm's alpha is ignored",
       ("tests/test_onnx_import.py", "tests/test_onnx_backend.py"),
       "pytorch_exports_match_pytorch or gemm"),
    # -- Keras readers ----------------------------------------------------------------------------
    _m("keras-legacy-by-position", "keras", "fastconv/keras_io/weights.py",
       "order = [names[s[0]] for s in stored]", "order = layers",
       "legacy weights are always matched by position, never by name",
       ("tests/test_keras_files.py", GAPS), "legacy"),
    _m("keras-activation-dropped", "keras", "fastconv/keras_io/layers.py",
       "kwargs[\"activation\"] = _activation_name(value, where)",
       "kwargs[\"activation\"] = \"linear\"",
       "a layer's activation is read as linear",
       "tests/test_keras_files.py", "reference_file_predicts"),
    _m("keras3-by-name-ignored", "keras", "fastconv/keras_io/weights.py",
       "sub = by_name.get(layer.name, by_path.get(key))", "sub = by_path.get(key)",
       "Keras 3 weights are looked up by path only, never by the layer's name",
       "tests/test_keras_files.py", "round_trip or reference_file or grouped"),
    _m("keras-shape-check-dropped", "keras", "fastconv/keras_io/weights.py",
       "if tuple(value.shape) != tuple(var.shape):", "if False:",
       "weights of the wrong shape are not refused before assignment",
       "tests/test_keras_files.py", "do_not_fit or more_weights"),
]

BY_ID = {m.id: m for m in MUTANTS}
