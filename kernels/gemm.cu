// Dense tiled GEMM, batched: C[z] = op(A[z]) @ op(B[z]) for z = blockIdx.z, op = transpose
// where asked; row-major matrices with leading dimensions lda, ldb, ldc and batch strides (0
// broadcasts one operand over the batch). Dense layers use one batch; Winograd's GEMM stage
// uses alpha^2 batches (transformed tiles x channels @ channels x filters).
//
// Tiling (gemm_tile.cuh): TILE_M x TILE_N block tiles, TILE_K-deep steps staged in static
// shared memory, THREAD_M x THREAD_N registers per thread; B's tile is loaded as 16-byte
// vectors (float4 / double2) when B is not transposed, ldb is a multiple of the vector width
// and B is 16-byte aligned. Grid: (ceil(M / TILE_M), ceil(N / TILE_N), batches).
#include "gemm_tile.cuh"

template <typename T>
struct DenseA {
    const T* __restrict__ p;
    int ld, rows, trans;
    // As[kk][mm] = op(A)[m0 + mm, k0 + kk]: reads run along A's contiguous axis
    __device__ __forceinline__ void load_a(FcTileA<T>& As, int m0, int k0,
                                           int k_end) const {
        for (int e = threadIdx.x; e < TILE_K * TILE_M; e += FC_TILE_THREADS) {
            int mm, kk;
            if (trans) { kk = e / TILE_M; mm = e % TILE_M; }
            else { mm = e / TILE_K; kk = e % TILE_K; }
            const int m = m0 + mm, k = k0 + kk;
            As[kk][mm] = (m < rows && k < k_end) ? (trans ? p[k * ld + m] : p[m * ld + k]) : T(0);
        }
    }
};

template <typename T>
struct DenseB {
    const T* __restrict__ p;
    int ld, cols, trans;
    bool vec;
    __device__ __forceinline__ void load_b(FcTileB<T>& Bs, int k0, int n0,
                                           int k_end) const {
        if (!trans) {
            fc_load_rows(Bs, p, ld, k_end, cols, k0, n0, vec);
            return;
        }
        for (int e = threadIdx.x; e < TILE_K * TILE_N; e += FC_TILE_THREADS) {
            const int nn = e / TILE_K, kk = e % TILE_K;
            const int n = n0 + nn, k = k0 + kk;
            Bs[kk][nn] = (n < cols && k < k_end) ? p[n * ld + k] : T(0);
        }
    }
};

template <typename T>
__device__ void gemm(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c, int M,
                     int N, int K, int trans_a, int trans_b, int lda, int ldb, int ldc,
                     int stride_a, int stride_b, int stride_c) {
    const int z = blockIdx.z;
    const T* bz = b + z * stride_b;
    const DenseA<T> la{a + z * stride_a, lda, M, trans_a};
    const DenseB<T> lb{bz, ldb, N, trans_b,
                       !trans_b && ldb % FcVec<T>::width == 0 && fc_aligned16(bz)};
    const int m0 = blockIdx.x * TILE_M, n0 = blockIdx.y * TILE_N;
    T acc[THREAD_M][THREAD_N];
    fc_zero(acc);
    fc_gemm_mainloop<T>(la, lb, m0, n0, 0, K, acc);
    T* cz = c + z * stride_c;
#pragma unroll
    for (int i = 0; i < THREAD_M; ++i) {
        const int m = m0 + fc_tile_row(i);
#pragma unroll
        for (int j = 0; j < THREAD_N; ++j) {
            const int n = n0 + fc_tile_col(j);
            if (m < M && n < N) cz[m * ldc + n] = acc[i][j];
        }
    }
}

extern "C" __global__ void fc_gemm_f32(const float* a, const float* b, float* c, int M, int N, int K, int trans_a, int trans_b, int lda, int ldb, int ldc, int stride_a, int stride_b, int stride_c) {
    gemm<float>(a, b, c, M, N, K, trans_a, trans_b, lda, ldb, ldc, stride_a, stride_b, stride_c);
}
extern "C" __global__ void fc_gemm_f64(const double* a, const double* b, double* c, int M, int N, int K, int trans_a, int trans_b, int lda, int ldb, int ldc, int stride_a, int stride_b, int stride_c) {
    gemm<double>(a, b, c, M, N, K, trans_a, trans_b, lda, ldb, ldc, stride_a, stride_b, stride_c);
}
