// Element-wise kernels: the fused bias + activation epilogue and its backward (with the bias
// gradient's per-channel sums), one Adam step, uniform random numbers.
//
// Arrays are viewed as (rows, channels), channels last and contiguous. 1-D kernels use
// grid-stride loops (any launch size is correct).
#include "common.cuh"

#ifndef EPILOGUE_THREADS
#define EPILOGUE_THREADS 256  // most threads per block of the column-sum kernel
#endif

// y[r, k] = act(y[r, k] + b[k]) in place (b unread without has_bias); act: FC_LINEAR, FC_RELU.
template <typename T>
__device__ void bias_activation(T* __restrict__ y, const T* __restrict__ b, int rows, int ch,
                                int has_bias, int act) {
    FC_GRID_STRIDE(i, rows * ch) {
        T v = y[i];
        if (has_bias) v += b[i % ch];
        y[i] = fc_activate(v, act);
    }
}

// Backward of y = act(z + b): dz = dy * (y > 0) for ReLU (written only then; for linear dz is
// dy itself), and with_bias: db[k] += sum over rows of dz[:, k] (db zeroed by the caller).
// Block: blockDim.x channels by blockDim.y rows; block (bx, by) sums the rows
// [by * rows_per_block, (by + 1) * rows_per_block) of its channels, reduces over threadIdx.y
// in shared memory and adds its partial sums to db atomically.
template <typename T>
__device__ void epilogue_backward(const T* __restrict__ dy, const T* __restrict__ y,
                                  T* __restrict__ dz, T* __restrict__ db, int rows, int ch,
                                  int act, int with_bias, int rows_per_block) {
    __shared__ T partial[EPILOGUE_THREADS];
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const int r0 = blockIdx.y * rows_per_block;
    int r1 = r0 + rows_per_block;
    if (r1 > rows) r1 = rows;
    T acc = T(0);
    if (k < ch) {
        for (int r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            const int i = r * ch + k;
            T g = dy[i];
            if (act == FC_RELU) {
                g = y[i] > T(0) ? g : T(0);
                dz[i] = g;
            }
            acc += g;
        }
    }
    if (!with_bias) return;  // uniform over the block: no thread waits at the barrier below
    partial[threadIdx.y * blockDim.x + threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && k < ch) {
        for (int t = 1; t < blockDim.y; ++t) acc += partial[t * blockDim.x + threadIdx.x];
        atomicAdd(&db[k], acc);
    }
}

// One Adam step in place (Kingma & Ba; Keras's bias correction folded into lr_t):
// m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); p -= lr_t * m / (sqrt(v) + eps).
template <typename T>
__device__ void adam_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                            T* __restrict__ v, int count, T lr_t, T beta_1, T beta_2, T eps) {
    const T one_b1 = T(1) - beta_1;
    const T one_b2 = T(1) - beta_2;
    FC_GRID_STRIDE(i, count) {
        const T gi = g[i];
        const T mi = m[i] + (gi - m[i]) * one_b1;
        const T vi = v[i] + (gi * gi - v[i]) * one_b2;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr_t * mi / (fc_sqrt(vi) + eps);
    }
}

// SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mix.
__device__ __forceinline__ unsigned long long fc_mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Uniform [0, 1) from a counter-based hash: element i gets mix64(seed + (i + 1) * golden), its
// top 24 bits (float) or 53 bits (double) scaled by 2^-24 / 2^-53. Any launch size gives the
// same numbers.
template <typename T> __device__ __forceinline__ T fc_unit(unsigned long long bits);
template <> __device__ __forceinline__ float fc_unit<float>(unsigned long long bits) {
    return float(bits >> 40) * 5.9604644775390625e-08f;  // 2^-24
}
template <> __device__ __forceinline__ double fc_unit<double>(unsigned long long bits) {
    return double(bits >> 11) * 1.1102230246251565e-16;  // 2^-53
}

template <typename T>
__device__ void random_uniform(T* __restrict__ out, int count, unsigned long long seed) {
    FC_GRID_STRIDE(i, count) {
        const unsigned long long counter = (unsigned long long)(i) + 1ull;
        out[i] = fc_unit<T>(fc_mix64(seed + counter * 0x9e3779b97f4a7c15ull));
    }
}

extern "C" __global__ void fc_bias_activation_f32(float* y, const float* b, int rows, int ch, int has_bias, int act) {
    bias_activation<float>(y, b, rows, ch, has_bias, act);
}
extern "C" __global__ void fc_bias_activation_f64(double* y, const double* b, int rows, int ch, int has_bias, int act) {
    bias_activation<double>(y, b, rows, ch, has_bias, act);
}

extern "C" __global__ void fc_epilogue_backward_f32(const float* dy, const float* y, float* dz, float* db, int rows, int ch, int act, int with_bias, int rows_per_block) {
    epilogue_backward<float>(dy, y, dz, db, rows, ch, act, with_bias, rows_per_block);
}
extern "C" __global__ void fc_epilogue_backward_f64(const double* dy, const double* y, double* dz, double* db, int rows, int ch, int act, int with_bias, int rows_per_block) {
    epilogue_backward<double>(dy, y, dz, db, rows, ch, act, with_bias, rows_per_block);
}

extern "C" __global__ void fc_adam_update_f32(float* p, const float* g, float* m, float* v, int count, float lr_t, float beta_1, float beta_2, float eps) {
    adam_update<float>(p, g, m, v, count, lr_t, beta_1, beta_2, eps);
}
extern "C" __global__ void fc_adam_update_f64(double* p, const double* g, double* m, double* v, int count, double lr_t, double beta_1, double beta_2, double eps) {
    adam_update<double>(p, g, m, v, count, lr_t, beta_1, beta_2, eps);
}

extern "C" __global__ void fc_random_uniform_f32(float* out, int count, unsigned long long seed) {
    random_uniform<float>(out, count, seed);
}
extern "C" __global__ void fc_random_uniform_f64(double* out, int count, unsigned long long seed) {
    random_uniform<double>(out, count, seed);
}
