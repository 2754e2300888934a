// Max and average pooling over NHWC, forward and backward; one thread per output element
// (forward) or per input element (backward, a gather over the windows covering it: no atomics,
// no zeroing pass, deterministic sums). Grid-stride loops over the flat NHWC index, so adjacent
// threads read adjacent channels.
//
// Max pooling records the window tap i * pw + j of each maximum (the first on ties; padding never
// wins, so a window of -inf records its first in-bounds tap; a NaN wins and stays, as in
// PyTorch). Average pooling divides by the number of in-bounds elements of each window (Keras's
// 'same' padding). Geometry: POOL_FIELDS (fastconv.geometry).
#include "common.cuh"

// Split the flat NHWC index of an (n, rows, cols, c) array.
__device__ __forceinline__ void fc_unflatten(int idx, int rows, int cols, int c, int& img,
                                             int& r, int& s, int& k) {
    k = idx % c;
    int t = idx / c;
    s = t % cols;
    t /= cols;
    r = t % rows;
    img = t / rows;
}

// y[img, p, q, k] = max over the window's in-bounds taps; argmax (when with_argmax) its tap.
template <typename T>
__device__ void max_forward(const T* __restrict__ x, T* __restrict__ y, int* __restrict__ argmax,
                            int with_argmax, PoolGeom g) {
    FC_GRID_STRIDE(idx, g.n * g.oh * g.ow * g.c) {
        int img, p, q, k;
        fc_unflatten(idx, g.oh, g.ow, g.c, img, p, q, k);
        const int top = p * g.sh - g.pt;
        const int left = q * g.sw - g.pl;
        T best = fc_neg_inf<T>();
        // a window holding only -inf keeps its first in-bounds tap, never a padding tap
        int arg = (top < 0 ? -top : 0) * g.pw + (left < 0 ? -left : 0);
        for (int i = 0; i < g.ph; ++i) {
            const int ih = top + i;
            if (ih < 0 || ih >= g.h) continue;
            for (int j = 0; j < g.pw; ++j) {
                const int iw = left + j;
                if (iw < 0 || iw >= g.w) continue;
                const T v = x[((img * g.h + ih) * g.w + iw) * g.c + k];
                if (v > best || (v != v && best == best)) {  // a NaN wins once and stays
                    best = v;
                    arg = i * g.pw + j;
                }
            }
        }
        y[idx] = best;
        if (with_argmax) argmax[idx] = arg;
    }
}

// dx[img, u, v, k] = sum of dy over the windows covering (u, v) whose maximum was there.
template <typename T>
__device__ void max_backward(const T* __restrict__ dy, const int* __restrict__ argmax,
                             T* __restrict__ dx, PoolGeom g) {
    FC_GRID_STRIDE(idx, g.n * g.h * g.w * g.c) {
        int img, u, v, k;
        fc_unflatten(idx, g.h, g.w, g.c, img, u, v, k);
        int p0, p1, q0, q1;
        fc_windows_covering(u, g.pt, g.ph, g.sh, g.oh, p0, p1);
        fc_windows_covering(v, g.pl, g.pw, g.sw, g.ow, q0, q1);
        T acc = T(0);
        for (int p = p0; p <= p1; ++p) {
            const int i = u - (p * g.sh - g.pt);
            for (int q = q0; q <= q1; ++q) {
                const int o = ((img * g.oh + p) * g.ow + q) * g.c + k;
                if (argmax[o] == i * g.pw + (v - (q * g.sw - g.pl))) acc += dy[o];
            }
        }
        dx[idx] = acc;
    }
}

// Number of in-bounds elements of window (p, q).
__device__ __forceinline__ int fc_window_count(const PoolGeom& g, int p, int q) {
    const int top = p * g.sh - g.pt, left = q * g.sw - g.pl;
    const int i0 = top > 0 ? top : 0, i1 = top + g.ph < g.h ? top + g.ph : g.h;
    const int j0 = left > 0 ? left : 0, j1 = left + g.pw < g.w ? left + g.pw : g.w;
    return (i1 - i0) * (j1 - j0);
}

// y = mean over each window's in-bounds elements.
template <typename T>
__device__ void avg_forward(const T* __restrict__ x, T* __restrict__ y, PoolGeom g) {
    FC_GRID_STRIDE(idx, g.n * g.oh * g.ow * g.c) {
        int img, p, q, k;
        fc_unflatten(idx, g.oh, g.ow, g.c, img, p, q, k);
        const int top = p * g.sh - g.pt, left = q * g.sw - g.pl;
        T acc = T(0);
        for (int ih = (top > 0 ? top : 0); ih < top + g.ph && ih < g.h; ++ih)
            for (int iw = (left > 0 ? left : 0); iw < left + g.pw && iw < g.w; ++iw)
                acc += x[((img * g.h + ih) * g.w + iw) * g.c + k];
        y[idx] = acc * (T(1) / T(fc_window_count(g, p, q)));
    }
}

// dx[img, u, v, k] = sum of dy / count over the windows covering (u, v).
template <typename T>
__device__ void avg_backward(const T* __restrict__ dy, T* __restrict__ dx, PoolGeom g) {
    FC_GRID_STRIDE(idx, g.n * g.h * g.w * g.c) {
        int img, u, v, k;
        fc_unflatten(idx, g.h, g.w, g.c, img, u, v, k);
        int p0, p1, q0, q1;
        fc_windows_covering(u, g.pt, g.ph, g.sh, g.oh, p0, p1);
        fc_windows_covering(v, g.pl, g.pw, g.sw, g.ow, q0, q1);
        T acc = T(0);
        for (int p = p0; p <= p1; ++p)
            for (int q = q0; q <= q1; ++q)
                acc += dy[((img * g.oh + p) * g.ow + q) * g.c + k] *
                       (T(1) / T(fc_window_count(g, p, q)));
        dx[idx] = acc;
    }
}

extern "C" __global__ void fc_max_pool_forward_f32(const float* x, float* y, int* argmax, int with_argmax, int n, int h, int w, int c, int ph, int pw, int sh, int sw, int pt, int pb, int pl, int pr, int oh, int ow) {
    max_forward<float>(x, y, argmax, with_argmax, FC_POOL_GEOM);
}
extern "C" __global__ void fc_max_pool_forward_f64(const double* x, double* y, int* argmax, int with_argmax, int n, int h, int w, int c, int ph, int pw, int sh, int sw, int pt, int pb, int pl, int pr, int oh, int ow) {
    max_forward<double>(x, y, argmax, with_argmax, FC_POOL_GEOM);
}

extern "C" __global__ void fc_max_pool_backward_f32(const float* dy, const int* argmax, float* dx, int n, int h, int w, int c, int ph, int pw, int sh, int sw, int pt, int pb, int pl, int pr, int oh, int ow) {
    max_backward<float>(dy, argmax, dx, FC_POOL_GEOM);
}
extern "C" __global__ void fc_max_pool_backward_f64(const double* dy, const int* argmax, double* dx, int n, int h, int w, int c, int ph, int pw, int sh, int sw, int pt, int pb, int pl, int pr, int oh, int ow) {
    max_backward<double>(dy, argmax, dx, FC_POOL_GEOM);
}

extern "C" __global__ void fc_avg_pool_forward_f32(const float* x, float* y, int n, int h, int w, int c, int ph, int pw, int sh, int sw, int pt, int pb, int pl, int pr, int oh, int ow) {
    avg_forward<float>(x, y, FC_POOL_GEOM);
}
extern "C" __global__ void fc_avg_pool_forward_f64(const double* x, double* y, int n, int h, int w, int c, int ph, int pw, int sh, int sw, int pt, int pb, int pl, int pr, int oh, int ow) {
    avg_forward<double>(x, y, FC_POOL_GEOM);
}

extern "C" __global__ void fc_avg_pool_backward_f32(const float* dy, float* dx, int n, int h, int w, int c, int ph, int pw, int sh, int sw, int pt, int pb, int pl, int pr, int oh, int ow) {
    avg_backward<float>(dy, dx, FC_POOL_GEOM);
}
extern "C" __global__ void fc_avg_pool_backward_f64(const double* dy, double* dx, int n, int h, int w, int c, int ph, int pw, int sh, int sw, int pt, int pb, int pl, int pr, int oh, int ow) {
    avg_backward<double>(dy, dx, FC_POOL_GEOM);
}
