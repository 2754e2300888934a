// The tiled GEMM main loop shared by gemm.cu (dense and batched GEMM) and conv_implicit_gemm.cu
// (the three implicit-GEMM convolution passes).
//
// A block computes a TILE_M x TILE_N tile of C = A (M x K) @ B (K x N) with
// (TILE_M / THREAD_M) * (TILE_N / THREAD_N) threads. For each TILE_K-deep step the block stages
// A's tile (stored k-major: As[k][m]) and B's tile (Bs[k][n]) in static shared memory, then each
// thread accumulates a THREAD_M x THREAD_N register block: rows tm + i * (TILE_M / THREAD_M) and
// columns tn + j * (TILE_N / THREAD_N), so that neighbouring threads touch neighbouring shared
// memory words and neighbouring output columns (coalesced stores).
//
// Operands are "loaders": objects whose load_a / load_b fill a shared tile with zeros outside
// [0, M) x [0, K) and [0, K) x [0, N) (bounds checks) -- plain matrices with optional transposes
// (gemm.cu), the virtual im2col patch matrix or the gathered output gradient (conv_implicit_gemm.cu).
#pragma once

#ifndef FC_GEMM_TILE_CUH
#define FC_GEMM_TILE_CUH

#include "common.cuh"

#ifndef TILE_M
#define TILE_M 64
#endif
#ifndef TILE_N
#define TILE_N 64
#endif
#ifndef TILE_K
#define TILE_K 8
#endif
#ifndef THREAD_M
#define THREAD_M 4
#endif
#ifndef THREAD_N
#define THREAD_N 4
#endif

#define FC_TILE_THREADS ((TILE_M / THREAD_M) * (TILE_N / THREAD_N))

// Shared tiles, each row padded by one element: loaders that store along k (8 threads writing
// one column) hit 8 different banks instead of one.
#define FC_SMEM_PAD 1
template <typename T> using FcTileA = T[TILE_K][TILE_M + FC_SMEM_PAD];
template <typename T> using FcTileB = T[TILE_K][TILE_N + FC_SMEM_PAD];

static_assert(TILE_M % THREAD_M == 0 && TILE_N % THREAD_N == 0, "tiles must split into threads");
static_assert(TILE_N % 4 == 0, "TILE_N must hold whole 16-byte vectors of float");

// Row and column of register (i, j) of this thread inside the block tile.
__device__ __forceinline__ int fc_tile_row(int i) {
    return int(threadIdx.x) / (TILE_N / THREAD_N) + i * (TILE_M / THREAD_M);
}
__device__ __forceinline__ int fc_tile_col(int j) {
    return int(threadIdx.x) % (TILE_N / THREAD_N) + j * (TILE_N / THREAD_N);
}

// Stage a row-major (rows x cols, leading dimension ld) matrix's [k0, k0 + TILE_K) x
// [n0, n0 + TILE_N) tile into Bs, zeros outside. With `vec` (ld a multiple of the vector width
// and p 16-byte aligned: the caller checks once) whole 16-byte vectors are loaded where the
// vector lies inside the matrix, scalars at the right edge.
template <typename T>
__device__ __forceinline__ void fc_load_rows(FcTileB<T>& Bs, const T* __restrict__ p,
                                             int ld, int rows, int cols, int k0, int n0,
                                             bool vec) {
    constexpr int V = FcVec<T>::width;
    if (vec) {
        for (int e = threadIdx.x; e < TILE_K * (TILE_N / V); e += FC_TILE_THREADS) {
            const int kk = e / (TILE_N / V);
            const int nn = (e % (TILE_N / V)) * V;
            const int k = k0 + kk, n = n0 + nn;
            T v[V];
            if (k < rows && n + V <= cols) {
                FcVec<T>::load(p + k * ld + n, v);
            } else {
                for (int t = 0; t < V; ++t)
                    v[t] = (k < rows && n + t < cols) ? p[k * ld + n + t] : T(0);
            }
            for (int t = 0; t < V; ++t) Bs[kk][nn + t] = v[t];
        }
    } else {
        for (int e = threadIdx.x; e < TILE_K * TILE_N; e += FC_TILE_THREADS) {
            const int kk = e / TILE_N, nn = e % TILE_N;
            const int k = k0 + kk, n = n0 + nn;
            Bs[kk][nn] = (k < rows && n < cols) ? p[k * ld + n] : T(0);
        }
    }
}

// acc += A[m0 : m0 + TILE_M, k_begin : k_end] @ B[k_begin : k_end, n0 : n0 + TILE_N] for this
// thread's register block. Every thread of the block must call it (it synchronises).
template <typename T, class LoadA, class LoadB>
__device__ __forceinline__ void fc_gemm_mainloop(const LoadA& la, const LoadB& lb, int m0, int n0,
                                                 int k_begin, int k_end,
                                                 T (&acc)[THREAD_M][THREAD_N]) {
    __shared__ FcTileA<T> As;
    __shared__ FcTileB<T> Bs;
    for (int k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        la.load_a(As, m0, k0, k_end);
        lb.load_b(Bs, k0, n0, k_end);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TILE_K; ++kk) {
            T a[THREAD_M], b[THREAD_N];
#pragma unroll
            for (int i = 0; i < THREAD_M; ++i) a[i] = As[kk][fc_tile_row(i)];
#pragma unroll
            for (int j = 0; j < THREAD_N; ++j) b[j] = Bs[kk][fc_tile_col(j)];
#pragma unroll
            for (int i = 0; i < THREAD_M; ++i)
#pragma unroll
                for (int j = 0; j < THREAD_N; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
}

template <typename T>
__device__ __forceinline__ void fc_zero(T (&acc)[THREAD_M][THREAD_N]) {
#pragma unroll
    for (int i = 0; i < THREAD_M; ++i)
#pragma unroll
        for (int j = 0; j < THREAD_N; ++j) acc[i][j] = T(0);
}

#endif  // FC_GEMM_TILE_CUH
