// Grouped and depthwise convolution, NHWC x grouped HWIO, every group in one launch per pass.
//
// Shapes: x (n, h, w, c), wgt (kh, kw, c/groups, o), y and dy (n, oh, ow, o). With cg = c/groups
// and og = o/groups, output channel oc belongs to group oc / og and sees input channels
// (oc / og) * cg ... (oc / og) * cg + cg - 1. Depthwise convolution is groups == c: cg = 1 and
// output channel ch * M + m (depth multiplier M = o / c) sees input channel ch only.
//   forward          y[img, p, q, oc] = act(b[oc] + sum_{i, j, ci < cg} x[img, p*sh-pt+i*dh,
//                                       q*sw-pl+j*dw, (oc/og)*cg + ci] * w[i, j, ci, oc])
//                    one thread per output element, oc fastest (grid-stride)
//   backward-data    dx[img, u, v, ch] = sum over the taps (i, j) and output pixels (p, q) with
//                    u = p*sh-pt+i*dh, v = q*sw-pl+j*dw of sum_{k < og} dy[img, p, q, gr*og + k]
//                    * w[i, j, ch - gr*cg, gr*og + k], gr = ch / cg
//                    one thread per input element, ch fastest (a gather: no atomics)
//   backward-weight  dw[i, j, ci, oc] = sum_{img, p, q} x[img, p*sh-pt+i*dh, q*sw-pl+j*dw,
//                    (oc/og)*cg + ci] * dy[img, p, q, oc]
//                    one block per kernel element (block-stride over them): the block's
//                    GROUPED_THREADS threads stride over the n*oh*ow pixels, then a tree
//                    reduction in shared memory; the order of the sums is fixed by the launch
//                    size, so the result is deterministic (no atomics)
// Geometry: CONV_FIELDS (fastconv.geometry) of the whole convolution (c = C_in, o = C_out), plus
// groups; out-of-image taps read zeros (padding). Every index is checked against its extent
// before the access.
#include "common.cuh"

// Threads per block of the backward-weight reduction (a power of two); the launcher passes its
// block size (the emulation's smaller blocks) as this define.
#ifndef GROUPED_THREADS
#define GROUPED_THREADS 256
#endif
static_assert((GROUPED_THREADS & (GROUPED_THREADS - 1)) == 0 && GROUPED_THREADS >= 1,
              "GROUPED_THREADS must be a power of two");

template <typename T>
__device__ void grouped_forward(const T* __restrict__ x, const T* __restrict__ wgt,
                                const T* __restrict__ bias, T* __restrict__ y, int has_bias,
                                int act, int groups, ConvGeom g) {
    const int cg = g.c / groups;
    const int og = g.o / groups;
    FC_GRID_STRIDE(idx, g.n * g.oh * g.ow * g.o) {
        const int oc = idx % g.o;
        const int m = idx / g.o;
        const int q = m % g.ow;
        const int p = (m / g.ow) % g.oh;
        const int img = m / (g.ow * g.oh);
        const int c0 = (oc / og) * cg;
        if (img >= g.n || c0 + cg > g.c) continue;
        T acc = has_bias ? bias[oc] : T(0);
        for (int i = 0; i < g.kh; ++i) {
            const int ih = fc_in_row(g, p, i);
            if (ih < 0 || ih >= g.h) continue;
            for (int j = 0; j < g.kw; ++j) {
                const int iw = fc_in_col(g, q, j);
                if (iw < 0 || iw >= g.w) continue;
                const T* xp = x + ((img * g.h + ih) * g.w + iw) * g.c + c0;
                const T* wp = wgt + (i * g.kw + j) * cg * g.o + oc;
                for (int ci = 0; ci < cg; ++ci) acc += xp[ci] * wp[ci * g.o];
            }
        }
        y[idx] = fc_activate(acc, act);
    }
}

template <typename T>
__device__ void grouped_backward_data(const T* __restrict__ dy, const T* __restrict__ wgt,
                                      T* __restrict__ dx, int groups, ConvGeom g) {
    const int cg = g.c / groups;
    const int og = g.o / groups;
    FC_GRID_STRIDE(idx, g.n * g.h * g.w * g.c) {
        const int ch = idx % g.c;
        const int t = idx / g.c;
        const int v = t % g.w;
        const int u = (t / g.w) % g.h;
        const int img = t / (g.w * g.h);
        const int gr = ch / cg;
        const int ci = ch - gr * cg;
        const int o0 = gr * og;
        if (img >= g.n || o0 + og > g.o) continue;
        T acc = T(0);
        for (int i = 0; i < g.kh; ++i) {
            const int p = fc_out_index(u, g.pt, i, g.dh, g.sh, g.oh);
            if (p < 0) continue;
            for (int j = 0; j < g.kw; ++j) {
                const int q = fc_out_index(v, g.pl, j, g.dw, g.sw, g.ow);
                if (q < 0) continue;
                const T* dyp = dy + ((img * g.oh + p) * g.ow + q) * g.o + o0;
                const T* wp = wgt + ((i * g.kw + j) * cg + ci) * g.o + o0;
                for (int k = 0; k < og; ++k) acc += dyp[k] * wp[k];
            }
        }
        dx[idx] = acc;
    }
}

template <typename T>
__device__ void grouped_backward_weight(const T* __restrict__ x, const T* __restrict__ dy,
                                        T* __restrict__ dwgt, int groups, ConvGeom g) {
    __shared__ T partial[GROUPED_THREADS];
    const int cg = g.c / groups;
    const int og = g.o / groups;
    const int pixels = g.n * g.oh * g.ow;
    const int tid = threadIdx.x;
    // threads taking part: at most GROUPED_THREADS (the size of `partial`)
    const int nt = (int)blockDim.x < GROUPED_THREADS ? (int)blockDim.x : GROUPED_THREADS;
    const int weights = g.kh * g.kw * cg * g.o;
    // the loop bounds are the same for every thread of the block: the barriers are uniform
    for (int idx = blockIdx.x; idx < weights; idx += gridDim.x) {
        const int oc = idx % g.o;
        const int t = idx / g.o;
        const int ci = t % cg;
        const int j = (t / cg) % g.kw;
        const int i = t / (cg * g.kw);
        const int ch = (oc / og) * cg + ci;
        T acc = T(0);
        if (tid < nt && ch < g.c && i < g.kh) {
            for (int r = tid; r < pixels; r += nt) {
                const int q = r % g.ow;
                const int p = (r / g.ow) % g.oh;
                const int img = r / (g.ow * g.oh);
                const T xv = fc_x_at(x, g, img, fc_in_row(g, p, i), fc_in_col(g, q, j), ch);
                acc += xv * dy[r * g.o + oc];
            }
        }
        if (tid < nt) partial[tid] = acc;
        __syncthreads();
        for (int s = GROUPED_THREADS / 2; s > 0; s >>= 1) {
            if (tid < s && tid + s < nt) partial[tid] += partial[tid + s];
            __syncthreads();
        }
        // only thread 0 reads and writes partial[0]; the others next write partial[tid > 0]
        // after the last barrier: no barrier is needed before the next kernel element
        if (tid == 0) dwgt[idx] = partial[0];
    }
}

extern "C" __global__ void fc_grouped_forward_f32(const float* x, const float* wgt, const float* bias, float* y, int has_bias, int act, int groups, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    grouped_forward<float>(x, wgt, bias, y, has_bias, act, groups, FC_CONV_GEOM);
}
extern "C" __global__ void fc_grouped_forward_f64(const double* x, const double* wgt, const double* bias, double* y, int has_bias, int act, int groups, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    grouped_forward<double>(x, wgt, bias, y, has_bias, act, groups, FC_CONV_GEOM);
}
extern "C" __global__ void fc_grouped_backward_data_f32(const float* dy, const float* wgt, float* dx, int groups, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    grouped_backward_data<float>(dy, wgt, dx, groups, FC_CONV_GEOM);
}
extern "C" __global__ void fc_grouped_backward_data_f64(const double* dy, const double* wgt, double* dx, int groups, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    grouped_backward_data<double>(dy, wgt, dx, groups, FC_CONV_GEOM);
}
extern "C" __global__ void fc_grouped_backward_weight_f32(const float* x, const float* dy, float* dwgt, int groups, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    grouped_backward_weight<float>(x, dy, dwgt, groups, FC_CONV_GEOM);
}
extern "C" __global__ void fc_grouped_backward_weight_f64(const double* x, const double* dy, double* dwgt, int groups, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    grouped_backward_weight<double>(x, dy, dwgt, groups, FC_CONV_GEOM);
}
