// Batch normalisation and local response normalisation on NHWC activations viewed as (rows,
// channels), channels contiguous. Formulas: fastconv.backends.base.Backend (batch_norm_*, lrn_*).
//
// The per-channel sums (batch statistics, the gradient's sums) accumulate in double: a block of
// blockDim.x channels by blockDim.y rows sums rows [blockIdx.y * rows_per_block, ...) of its
// channels, reduces over threadIdx.y in static shared memory and adds to the double outputs
// (zeroed by the caller) atomically. The element-wise passes are grid-stride loops; LRN takes one
// thread per element, its window sums over neighbouring channels in double.
#include "common.cuh"

#ifndef NORM_THREADS
#define NORM_THREADS 256  // most threads per block of the column sums
#endif

// Two column sums at once: s1[k] += sum_r f1(r, k), s2[k] += sum_r f2(r, k).
template <class Terms>
__device__ __forceinline__ void fc_column_sums(const Terms& terms, double* __restrict__ s1,
                                               double* __restrict__ s2, int rows, int ch,
                                               int rows_per_block) {
    __shared__ double part1[NORM_THREADS];
    __shared__ double part2[NORM_THREADS];
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const int r0 = blockIdx.y * rows_per_block;
    const int r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
    double a1 = 0.0, a2 = 0.0;
    if (k < ch) {
        for (int r = r0 + threadIdx.y; r < r1; r += blockDim.y) terms.add(r * ch + k, k, a1, a2);
    }
    const int slot = threadIdx.y * blockDim.x + threadIdx.x;
    part1[slot] = a1;
    part2[slot] = a2;
    __syncthreads();
    if (threadIdx.y == 0 && k < ch) {
        for (int t = 1; t < blockDim.y; ++t) {
            a1 += part1[t * blockDim.x + threadIdx.x];
            a2 += part2[t * blockDim.x + threadIdx.x];
        }
        atomicAdd(&s1[k], a1);
        atomicAdd(&s2[k], a2);
    }
}

// sum(x - center) and sum((x - center)^2) per channel (the two passes of the statistics).
template <typename T>
struct CenteredTerms {
    const T* __restrict__ x;
    const double* __restrict__ center;
    __device__ __forceinline__ void add(int i, int k, double& a1, double& a2) const {
        const double d = double(x[i]) - center[k];
        a1 += d;
        a2 += d * d;
    }
};

// sum(dy) and sum(dy * (x - mean)) per channel (batch norm's backward).
template <typename T>
struct GradTerms {
    const T* __restrict__ dy;
    const T* __restrict__ x;
    const T* __restrict__ mean;
    __device__ __forceinline__ void add(int i, int k, double& a1, double& a2) const {
        const double g = double(dy[i]);
        a1 += g;
        a2 += g * (double(x[i]) - double(mean[k]));
    }
};

// y = (x - mean) * scale + shift per channel (scale = gamma / sqrt(var + eps), shift = beta).
template <typename T>
__device__ void affine_centered(const T* __restrict__ x, const T* __restrict__ mean,
                                const T* __restrict__ scale, const T* __restrict__ shift,
                                T* __restrict__ y, int rows, int ch) {
    FC_GRID_STRIDE(i, rows * ch) {
        const int k = i % ch;
        y[i] = (x[i] - mean[k]) * scale[k] + shift[k];
    }
}

// Batch norm's dx = a * dy + b * (x - mean) + c per channel (a = gamma * inv, and in training
// b = -a * inv^2 * sum(dy * (x - mean)) / N, c = -a * sum(dy) / N; 0 in inference).
template <typename T>
__device__ void bn_dx(const T* __restrict__ dy, const T* __restrict__ x,
                      const T* __restrict__ mean, const T* __restrict__ a,
                      const T* __restrict__ b, const T* __restrict__ c, T* __restrict__ dx,
                      int rows, int ch) {
    FC_GRID_STRIDE(i, rows * ch) {
        const int k = i % ch;
        dx[i] = a[k] * dy[i] + b[k] * (x[i] - mean[k]) + c[k];
    }
}

// sum over |k' - k| <= radius (clipped to [0, ch)) of f(k'), in double.
template <class F>
__device__ __forceinline__ double fc_window(int k, int radius, int ch, const F& f) {
    const int lo = k - radius > 0 ? k - radius : 0;
    const int hi = k + radius < ch - 1 ? k + radius : ch - 1;
    double s = 0.0;
    for (int t = lo; t <= hi; ++t) s += f(t);
    return s;
}

// scale[c] = bias + alpha * sum(x[c']^2, |c' - c| <= radius); y = x * scale^-beta.
template <typename T>
__device__ void lrn_forward(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ scale,
                            int rows, int ch, int radius, T bias, T alpha, T beta) {
    FC_GRID_STRIDE(i, rows * ch) {
        const int k = i % ch;
        const T* row = x + (i - k);
        const double sq = fc_window(k, radius, ch, [row](int t) {
            const double v = double(row[t]);
            return v * v;
        });
        const double s = double(bias) + double(alpha) * sq;
        scale[i] = T(s);
        y[i] = T(double(x[i]) * pow(s, -double(beta)));
    }
}

// dx[c] = dy[c] * scale[c]^-beta - 2 alpha beta x[c] * sum(t[c'], |c' - c| <= radius),
// t = dy * y / scale.
template <typename T>
__device__ void lrn_backward(const T* __restrict__ dy, const T* __restrict__ x,
                             const T* __restrict__ y, const T* __restrict__ scale,
                             T* __restrict__ dx, int rows, int ch, int radius, T alpha, T beta) {
    FC_GRID_STRIDE(i, rows * ch) {
        const int k = i % ch;
        const int base = i - k;
        const double acc = fc_window(k, radius, ch, [dy, y, scale, base](int t) {
            return double(dy[base + t]) * double(y[base + t]) / double(scale[base + t]);
        });
        const double s = double(scale[i]);
        dx[i] = T(double(dy[i]) * pow(s, -double(beta)) -
                  2.0 * double(alpha) * double(beta) * double(x[i]) * acc);
    }
}

extern "C" __global__ void fc_bn_centered_sums_f32(const float* x, const double* center, double* s1, double* s2, int rows, int ch, int rows_per_block) {
    fc_column_sums(CenteredTerms<float>{x, center}, s1, s2, rows, ch, rows_per_block);
}
extern "C" __global__ void fc_bn_centered_sums_f64(const double* x, const double* center, double* s1, double* s2, int rows, int ch, int rows_per_block) {
    fc_column_sums(CenteredTerms<double>{x, center}, s1, s2, rows, ch, rows_per_block);
}
extern "C" __global__ void fc_bn_grad_sums_f32(const float* dy, const float* x, const float* mean, double* s_dy, double* s_dyx, int rows, int ch, int rows_per_block) {
    fc_column_sums(GradTerms<float>{dy, x, mean}, s_dy, s_dyx, rows, ch, rows_per_block);
}
extern "C" __global__ void fc_bn_grad_sums_f64(const double* dy, const double* x, const double* mean, double* s_dy, double* s_dyx, int rows, int ch, int rows_per_block) {
    fc_column_sums(GradTerms<double>{dy, x, mean}, s_dy, s_dyx, rows, ch, rows_per_block);
}
extern "C" __global__ void fc_bn_affine_f32(const float* x, const float* mean, const float* scale, const float* shift, float* y, int rows, int ch) {
    affine_centered<float>(x, mean, scale, shift, y, rows, ch);
}
extern "C" __global__ void fc_bn_affine_f64(const double* x, const double* mean, const double* scale, const double* shift, double* y, int rows, int ch) {
    affine_centered<double>(x, mean, scale, shift, y, rows, ch);
}
extern "C" __global__ void fc_bn_dx_f32(const float* dy, const float* x, const float* mean, const float* a, const float* b, const float* c, float* dx, int rows, int ch) {
    bn_dx<float>(dy, x, mean, a, b, c, dx, rows, ch);
}
extern "C" __global__ void fc_bn_dx_f64(const double* dy, const double* x, const double* mean, const double* a, const double* b, const double* c, double* dx, int rows, int ch) {
    bn_dx<double>(dy, x, mean, a, b, c, dx, rows, ch);
}
extern "C" __global__ void fc_lrn_forward_f32(const float* x, float* y, float* scale, int rows, int ch, int radius, float bias, float alpha, float beta) {
    lrn_forward<float>(x, y, scale, rows, ch, radius, bias, alpha, beta);
}
extern "C" __global__ void fc_lrn_forward_f64(const double* x, double* y, double* scale, int rows, int ch, int radius, double bias, double alpha, double beta) {
    lrn_forward<double>(x, y, scale, rows, ch, radius, bias, alpha, beta);
}
extern "C" __global__ void fc_lrn_backward_f32(const float* dy, const float* x, const float* y, const float* scale, float* dx, int rows, int ch, int radius, float alpha, float beta) {
    lrn_backward<float>(dy, x, y, scale, dx, rows, ch, radius, alpha, beta);
}
extern "C" __global__ void fc_lrn_backward_f64(const double* dy, const double* x, const double* y, const double* scale, double* dx, int rows, int ch, int radius, double alpha, double beta) {
    lrn_backward<double>(dy, x, y, scale, dx, rows, ch, radius, alpha, beta);
}
