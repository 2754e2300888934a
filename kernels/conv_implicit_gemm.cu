// Convolution as an implicit GEMM (im2col without the patch matrix in memory): the tiled GEMM
// main loop of gemm_tile.cuh with operands gathered on the fly into shared-memory tiles.
//
// With the virtual patch matrix P (rows m = (img, p, q) over N*OH*OW output pixels, columns
// k = (i, j, c) over KH*KW*C, P[m, k] = x[img, p*sh-pt+i*dh, q*sw-pl+j*dw, c] or 0 in the
// padding) and W the HWIO kernel viewed as (KH*KW*C, O):
//   forward          y  = act(P @ W + b)                          M = N*OH*OW, N = O, K = KH*KW*C
//   backward-data    dx = G @ Wt, G[(img,u,v), (i,j,o)] = dy[img, p, q, o] for the output
//                    pixel (p, q) that input pixel (u, v) reaches through tap (i, j) (0 where
//                    none: stride remainders, borders), Wt[(i,j,o), c] = w[i, j, c, o]
//                                                                 M = N*H*W, N = C, K = KH*KW*O
//   backward-weight  dW = P^T @ dy, split over the pixels: block z sums `chunk` pixels and adds
//                    its tile to dw (zeroed by the caller) atomically
//                                                                 M = KH*KW*C, N = O, K = N*OH*OW
// Each pass checks every gathered index against the image and matrix bounds. The row-major
// operands (W in forward, dy in backward-weight) are loaded as 16-byte vectors (float4 /
// double2) when O is a multiple of the vector width and the array is 16-byte aligned (checked
// once per block). Grid: (ceil(M / TILE_M), ceil(N / TILE_N), splits); TILE_* as gemm_tile.cuh.
#include "gemm_tile.cuh"

// P's tile: As[kk][mm] = P[m0 + mm, k0 + kk]; consecutive threads take consecutive k (channels).
template <typename T>
struct PatchA {
    const T* __restrict__ x;
    ConvGeom g;
    int rows;
    __device__ __forceinline__ void load_a(FcTileA<T>& As, int m0, int k0,
                                           int k_end) const {
        for (int e = threadIdx.x; e < TILE_K * TILE_M; e += FC_TILE_THREADS) {
            const int mm = e / TILE_K, kk = e % TILE_K;
            const int m = m0 + mm, k = k0 + kk;
            As[kk][mm] = (m < rows && k < k_end) ? fc_patch(x, g, m, k) : T(0);
        }
    }
};

// A row-major (rows x cols) operand as B: W (forward) or dy viewed as (N*OH*OW, O).
template <typename T>
struct RowsB {
    const T* __restrict__ p;
    int cols;
    bool vec;
    __device__ __forceinline__ void load_b(FcTileB<T>& Bs, int k0, int n0,
                                           int k_end) const {
        fc_load_rows(Bs, p, cols, k_end, cols, k0, n0, vec);
    }
};

template <typename T>
__device__ __forceinline__ bool fc_vector_rows(const T* p, int cols) {
    return cols % FcVec<T>::width == 0 && fc_aligned16(p);
}

template <typename T>
__device__ void forward(const T* __restrict__ x, const T* __restrict__ w,
                        const T* __restrict__ b, T* __restrict__ y, int has_bias, int act,
                        ConvGeom g) {
    const int M = g.n * g.oh * g.ow, K = g.kh * g.kw * g.c;
    const int m0 = blockIdx.x * TILE_M, n0 = blockIdx.y * TILE_N;
    const PatchA<T> la{x, g, M};
    const RowsB<T> lb{w, g.o, fc_vector_rows(w, g.o)};
    T acc[THREAD_M][THREAD_N];
    fc_zero(acc);
    fc_gemm_mainloop<T>(la, lb, m0, n0, 0, K, acc);
#pragma unroll
    for (int j = 0; j < THREAD_N; ++j) {
        const int n = n0 + fc_tile_col(j);
        if (n >= g.o) continue;
        const T bias = has_bias ? b[n] : T(0);
#pragma unroll
        for (int i = 0; i < THREAD_M; ++i) {
            const int m = m0 + fc_tile_row(i);
            if (m < M) y[m * g.o + n] = fc_activate(acc[i][j] + bias, act);
        }
    }
}

// G's tile: As[kk][mm] = G[m0 + mm, k0 + kk], k = (i, j, o) with o fastest.
template <typename T>
struct GradA {
    const T* __restrict__ dy;
    ConvGeom g;
    int rows;
    __device__ __forceinline__ void load_a(FcTileA<T>& As, int m0, int k0,
                                           int k_end) const {
        for (int e = threadIdx.x; e < TILE_K * TILE_M; e += FC_TILE_THREADS) {
            const int mm = e / TILE_K, kk = e % TILE_K;
            const int m = m0 + mm, k = k0 + kk;
            T v = T(0);
            if (m < rows && k < k_end) {
                const int v_col = m % g.w;
                const int t = m / g.w;
                const int u = t % g.h;
                const int img = t / g.h;
                const int o = k % g.o;
                const int ij = k / g.o;
                const int j = ij % g.kw, i = ij / g.kw;
                const int p = fc_out_index(u, g.pt, i, g.dh, g.sh, g.oh);
                const int q = fc_out_index(v_col, g.pl, j, g.dw, g.sw, g.ow);
                if (p >= 0 && q >= 0) v = dy[((img * g.oh + p) * g.ow + q) * g.o + o];
            }
            As[kk][mm] = v;
        }
    }
};

// Wt's tile: Bs[kk][nn] = w[i, j, n0 + nn, o] for k0 + kk = (i, j, o); consecutive threads read
// consecutive o (contiguous in HWIO).
template <typename T>
struct FlippedWeightsB {
    const T* __restrict__ w;
    ConvGeom g;
    __device__ __forceinline__ void load_b(FcTileB<T>& Bs, int k0, int n0,
                                           int k_end) const {
        for (int e = threadIdx.x; e < TILE_K * TILE_N; e += FC_TILE_THREADS) {
            const int nn = e / TILE_K, kk = e % TILE_K;
            const int k = k0 + kk, c = n0 + nn;
            T v = T(0);
            if (k < k_end && c < g.c) {
                const int o = k % g.o, ij = k / g.o;
                v = w[(ij * g.c + c) * g.o + o];
            }
            Bs[kk][nn] = v;
        }
    }
};

template <typename T>
__device__ void backward_data(const T* __restrict__ dy, const T* __restrict__ w,
                              T* __restrict__ dx, ConvGeom g) {
    const int M = g.n * g.h * g.w, K = g.kh * g.kw * g.o;
    const int m0 = blockIdx.x * TILE_M, n0 = blockIdx.y * TILE_N;
    const GradA<T> la{dy, g, M};
    const FlippedWeightsB<T> lb{w, g};
    T acc[THREAD_M][THREAD_N];
    fc_zero(acc);
    fc_gemm_mainloop<T>(la, lb, m0, n0, 0, K, acc);
#pragma unroll
    for (int i = 0; i < THREAD_M; ++i) {
        const int m = m0 + fc_tile_row(i);
#pragma unroll
        for (int j = 0; j < THREAD_N; ++j) {
            const int n = n0 + fc_tile_col(j);
            if (m < M && n < g.c) dx[m * g.c + n] = acc[i][j];
        }
    }
}

// P^T's tile: As[rr][kk] = P[r0 + rr, k_row0 + kk] (the GEMM's rows are P's columns);
// consecutive threads take consecutive columns (channels).
template <typename T>
struct PatchTransposedA {
    const T* __restrict__ x;
    ConvGeom g;
    int cols;  // KH*KW*C
    __device__ __forceinline__ void load_a(FcTileA<T>& As, int k_row0, int r0,
                                           int r_end) const {
        for (int e = threadIdx.x; e < TILE_K * TILE_M; e += FC_TILE_THREADS) {
            const int rr = e / TILE_M, kk = e % TILE_M;
            const int r = r0 + rr, k = k_row0 + kk;
            As[rr][kk] = (r < r_end && k < cols) ? fc_patch(x, g, r, k) : T(0);
        }
    }
};

template <typename T>
__device__ void backward_weight(const T* __restrict__ x, const T* __restrict__ dy,
                                T* __restrict__ dwgt, int chunk, ConvGeom g) {
    const int R = g.n * g.oh * g.ow, K = g.kh * g.kw * g.c;
    const int m0 = blockIdx.x * TILE_M, n0 = blockIdx.y * TILE_N;
    const int r_begin = blockIdx.z * chunk;
    const int r_end = r_begin + chunk < R ? r_begin + chunk : R;
    const PatchTransposedA<T> la{x, g, K};
    const RowsB<T> lb{dy, g.o, fc_vector_rows(dy, g.o)};
    T acc[THREAD_M][THREAD_N];
    fc_zero(acc);
    fc_gemm_mainloop<T>(la, lb, m0, n0, r_begin, r_end, acc);
#pragma unroll
    for (int i = 0; i < THREAD_M; ++i) {
        const int m = m0 + fc_tile_row(i);
#pragma unroll
        for (int j = 0; j < THREAD_N; ++j) {
            const int n = n0 + fc_tile_col(j);
            if (m < K && n < g.o) atomicAdd(&dwgt[m * g.o + n], acc[i][j]);
        }
    }
}

extern "C" __global__ void fc_implicit_gemm_forward_f32(const float* x, const float* wgt, const float* bias, float* y, int has_bias, int act, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    forward<float>(x, wgt, bias, y, has_bias, act, FC_CONV_GEOM);
}
extern "C" __global__ void fc_implicit_gemm_forward_f64(const double* x, const double* wgt, const double* bias, double* y, int has_bias, int act, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    forward<double>(x, wgt, bias, y, has_bias, act, FC_CONV_GEOM);
}
extern "C" __global__ void fc_implicit_gemm_backward_data_f32(const float* dy, const float* wgt, float* dx, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    backward_data<float>(dy, wgt, dx, FC_CONV_GEOM);
}
extern "C" __global__ void fc_implicit_gemm_backward_data_f64(const double* dy, const double* wgt, double* dx, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    backward_data<double>(dy, wgt, dx, FC_CONV_GEOM);
}
extern "C" __global__ void fc_implicit_gemm_backward_weight_f32(const float* x, const float* dy, float* dwgt, int chunk, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    backward_weight<float>(x, dy, dwgt, chunk, FC_CONV_GEOM);
}
extern "C" __global__ void fc_implicit_gemm_backward_weight_f64(const double* x, const double* dy, double* dwgt, int chunk, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    backward_weight<double>(x, dy, dwgt, chunk, FC_CONV_GEOM);
}
