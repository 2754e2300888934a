// Self-test kernels of the cupy backend's runtime (loader, CPU emulation): not used by layers.
//
// fc_saxpy_f32/_f64:   y[i] = a * x[i] + y[i], one thread per element, a grid-stride loop.
// fc_block_sum_f32/_f64: out[0] += sum(x), each block reducing SELFTEST_BLOCK elements per step
//                      in a static __shared__ array (tree reduction with __syncthreads), thread 0
//                      of each block adding its partial sum with atomicAdd; block size must be
//                      SELFTEST_BLOCK (a power of two).
// fc_histogram_i32:    counts[x[i]] += 1 with integer atomicAdd, values outside [0, bins) ignored.
// fc_grid_ids:         out[flat thread id] = the 3D block and thread ids packed in one int, to
//                      check multi-dimensional grids and blocks.

#ifndef SELFTEST_BLOCK
#define SELFTEST_BLOCK 128
#endif

template <typename T>
__device__ void saxpy(int n, T a, const T* __restrict__ x, T* __restrict__ y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        y[i] = a * x[i] + y[i];
    }
}

template <typename T>
__device__ void block_sum(int n, const T* __restrict__ x, T* __restrict__ out) {
    __shared__ T partial[SELFTEST_BLOCK];
    const int tid = threadIdx.x;
    T acc = 0;
    for (int i = blockIdx.x * SELFTEST_BLOCK + tid; i < n; i += SELFTEST_BLOCK * gridDim.x) {
        acc += x[i];
    }
    partial[tid] = acc;
    __syncthreads();
    for (int stride = SELFTEST_BLOCK / 2; stride > 0; stride /= 2) {
        if (tid < stride) partial[tid] += partial[tid + stride];
        __syncthreads();
    }
    if (tid == 0) atomicAdd(out, partial[0]);
}

extern "C" __global__ void fc_saxpy_f32(int n, float a, const float* x, float* y) {
    saxpy<float>(n, a, x, y);
}
extern "C" __global__ void fc_saxpy_f64(int n, double a, const double* x, double* y) {
    saxpy<double>(n, a, x, y);
}
extern "C" __global__ void fc_block_sum_f32(int n, const float* x, float* out) {
    block_sum<float>(n, x, out);
}
extern "C" __global__ void fc_block_sum_f64(int n, const double* x, double* out) {
    block_sum<double>(n, x, out);
}

extern "C" __global__ void fc_histogram_i32(int n, int bins, const int* x, int* counts) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const int v = x[i];
        if (v >= 0 && v < bins) atomicAdd(&counts[v], 1);
    }
}

extern "C" __global__ void fc_grid_ids(unsigned long long stride, int* out) {
    const unsigned long long block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    out[block * stride + thread] = static_cast<int>(
        (((blockIdx.z * 8 + blockIdx.y) * 8 + blockIdx.x) * 8 + threadIdx.z) * 64
        + threadIdx.y * 8 + threadIdx.x);
}
