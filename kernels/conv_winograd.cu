// Winograd F(m x m, 3 x 3) forward convolution (Lavin & Gray, CVPR 2016), stride 1, no
// dilation, as four stages over the whole layer:
//   filter transform   U[a, b, ch, oc] = (G w[:, :, ch, oc] G^T)[a, b]        one thread per (ch, oc)
//   input transform    V[a, b, t, ch]  = (B^T d_t B)[a, b] for each alpha x alpha input tile
//                      d_t of the padded input (zeros outside), t = (img, ty, tx)
//                                                                    one thread per (t, ch)
//   batched GEMM       M[a, b] = V[a, b] (tiles x C) @ U[a, b] (C x O): gemm.cu's tiled kernel
//                      with one batch per (a, b)
//   output transform   y tile = act(A^T M_t A + bias), cropped at the image's edge
//                                                                    one thread per (t, oc)
// Neighbouring threads take neighbouring channels (coalesced). The transform matrices come as
// initialiser lists from fastconv.winograd through the defines WINO_M, WINO_BT, WINO_G and
// WINO_AT (row-major; the defaults below are F(2x2, 3x3)); multiplications by their zeros are
// dropped at compile time. Geometry: CONV_FIELDS; tiles_h x tiles_w tiles per image.
#include "common.cuh"

#ifndef WINO_M
#define WINO_M 2
#define WINO_BT {1, 0, -1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 1, 0, -1}
#define WINO_G {1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1}
#define WINO_AT {1, 1, 1, 0, 0, 1, -1, -1}
#endif
#define WINO_A (WINO_M + 2)

// out[r][s] = sum_t L[r][t] * in[t][s] for a constant row-major L (rows x inner); zero
// coefficients skip their term (the loops unroll, so the test folds away).
template <typename T, int ROWS, int INNER, int COLS>
__device__ __forceinline__ void fc_left(const double (&L)[ROWS * INNER], const T (&in)[INNER][COLS],
                                        T (&out)[ROWS][COLS]) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int s = 0; s < COLS; ++s) {
            T acc = T(0);
#pragma unroll
            for (int t = 0; t < INNER; ++t)
                if (L[r * INNER + t] != 0.0) acc += T(L[r * INNER + t]) * in[t][s];
            out[r][s] = acc;
        }
}

// out[r][s] = sum_t in[r][t] * R[s][t] (in @ R^T) for a constant row-major R (cols x inner).
template <typename T, int ROWS, int INNER, int COLS>
__device__ __forceinline__ void fc_right_t(const T (&in)[ROWS][INNER], const double (&R)[COLS * INNER],
                                           T (&out)[ROWS][COLS]) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int s = 0; s < COLS; ++s) {
            T acc = T(0);
#pragma unroll
            for (int t = 0; t < INNER; ++t)
                if (R[s * INNER + t] != 0.0) acc += in[r][t] * T(R[s * INNER + t]);
            out[r][s] = acc;
        }
}

template <typename T>
__device__ void filter_transform(const T* __restrict__ wgt, T* __restrict__ U, int c, int o) {
    constexpr double G[WINO_A * 3] = WINO_G;
    FC_GRID_STRIDE(idx, c * o) {
        T g[3][3];
#pragma unroll
        for (int i = 0; i < 3; ++i)
#pragma unroll
            for (int j = 0; j < 3; ++j) g[i][j] = wgt[(i * 3 + j) * c * o + idx];
        T gg[WINO_A][3], u[WINO_A][WINO_A];
        fc_left<T, WINO_A, 3, 3>(G, g, gg);
        fc_right_t<T, WINO_A, 3, WINO_A>(gg, G, u);
#pragma unroll
        for (int a = 0; a < WINO_A; ++a)
#pragma unroll
            for (int b = 0; b < WINO_A; ++b) U[(a * WINO_A + b) * c * o + idx] = u[a][b];
    }
}

template <typename T>
__device__ void input_transform(const T* __restrict__ x, T* __restrict__ V, int tiles_h,
                                int tiles_w, ConvGeom g) {
    constexpr double BT[WINO_A * WINO_A] = WINO_BT;
    const int tiles = g.n * tiles_h * tiles_w;
    FC_GRID_STRIDE(idx, tiles * g.c) {
        const int ch = idx % g.c;
        const int t = idx / g.c;
        const int tx = t % tiles_w;
        const int ty = (t / tiles_w) % tiles_h;
        const int img = t / (tiles_w * tiles_h);
        const int top = ty * WINO_M - g.pt, left = tx * WINO_M - g.pl;
        T d[WINO_A][WINO_A], bd[WINO_A][WINO_A], v[WINO_A][WINO_A];
#pragma unroll
        for (int r = 0; r < WINO_A; ++r)
#pragma unroll
            for (int s = 0; s < WINO_A; ++s) d[r][s] = fc_x_at(x, g, img, top + r, left + s, ch);
        fc_left<T, WINO_A, WINO_A, WINO_A>(BT, d, bd);
        fc_right_t<T, WINO_A, WINO_A, WINO_A>(bd, BT, v);  // (B^T d) B = (B^T d) (B^T)^T
#pragma unroll
        for (int a = 0; a < WINO_A; ++a)
#pragma unroll
            for (int b = 0; b < WINO_A; ++b) V[(a * WINO_A + b) * tiles * g.c + idx] = v[a][b];
    }
}

template <typename T>
__device__ void output_transform(const T* __restrict__ M, const T* __restrict__ bias,
                                 T* __restrict__ y, int has_bias, int act, int tiles_h,
                                 int tiles_w, ConvGeom g) {
    constexpr double AT[WINO_M * WINO_A] = WINO_AT;
    const int tiles = g.n * tiles_h * tiles_w;
    FC_GRID_STRIDE(idx, tiles * g.o) {
        const int oc = idx % g.o;
        const int t = idx / g.o;
        const int tx = t % tiles_w;
        const int ty = (t / tiles_w) % tiles_h;
        const int img = t / (tiles_w * tiles_h);
        T mt[WINO_A][WINO_A], am[WINO_M][WINO_A], out[WINO_M][WINO_M];
#pragma unroll
        for (int a = 0; a < WINO_A; ++a)
#pragma unroll
            for (int b = 0; b < WINO_A; ++b) mt[a][b] = M[(a * WINO_A + b) * tiles * g.o + idx];
        fc_left<T, WINO_M, WINO_A, WINO_A>(AT, mt, am);
        fc_right_t<T, WINO_M, WINO_A, WINO_M>(am, AT, out);  // (A^T M) A = (A^T M) (A^T)^T
        const T b = has_bias ? bias[oc] : T(0);
#pragma unroll
        for (int r = 0; r < WINO_M; ++r) {
            const int p = ty * WINO_M + r;
            if (p >= g.oh) continue;
#pragma unroll
            for (int s = 0; s < WINO_M; ++s) {
                const int q = tx * WINO_M + s;
                if (q < g.ow) y[((img * g.oh + p) * g.ow + q) * g.o + oc] = fc_activate(out[r][s] + b, act);
            }
        }
    }
}

extern "C" __global__ void fc_winograd_filter_f32(const float* wgt, float* U, int c, int o) {
    filter_transform<float>(wgt, U, c, o);
}
extern "C" __global__ void fc_winograd_filter_f64(const double* wgt, double* U, int c, int o) {
    filter_transform<double>(wgt, U, c, o);
}
extern "C" __global__ void fc_winograd_input_f32(const float* x, float* V, int tiles_h, int tiles_w, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    input_transform<float>(x, V, tiles_h, tiles_w, FC_CONV_GEOM);
}
extern "C" __global__ void fc_winograd_input_f64(const double* x, double* V, int tiles_h, int tiles_w, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    input_transform<double>(x, V, tiles_h, tiles_w, FC_CONV_GEOM);
}
extern "C" __global__ void fc_winograd_output_f32(const float* M, const float* bias, float* y, int has_bias, int act, int tiles_h, int tiles_w, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    output_transform<float>(M, bias, y, has_bias, act, tiles_h, tiles_w, FC_CONV_GEOM);
}
extern "C" __global__ void fc_winograd_output_f64(const double* M, const double* bias, double* y, int has_bias, int act, int tiles_h, int tiles_w, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    output_transform<double>(M, bias, y, has_bias, act, tiles_h, tiles_w, FC_CONV_GEOM);
}
