// Shared by every fastconv CUDA C kernel: geometry structs, index arithmetic, launch helpers.
//
// Layouts: activations NHWC, convolution weights HWIO, dense matrices row-major. Kernels receive
// a convolution's geometry as the ints of fastconv.geometry.CONV_FIELDS, in that order
// (n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow), and a pooling's as those of
// POOL_FIELDS (n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow); the extern "C" wrappers
// gather them into ConvGeom / PoolGeom with FC_CONV_GEOM / FC_POOL_GEOM. Indices are int: the
// launchers refuse arrays of 2^31 elements or more.
//
// Every .cu file includes this header and compiles alone (NVRTC, nvcc, or g++ under the CPU
// emulation header); tile sizes are #ifndef defaults in each file, overridden by the launchers.
#pragma once

#ifndef FC_COMMON_CUH
#define FC_COMMON_CUH

// activation codes of the fused epilogues (fastconv.backends.numba_cpu.elementwise)
#define FC_LINEAR 0
#define FC_RELU 1

struct ConvGeom {
    int n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow;
};

struct PoolGeom {
    int n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow;
};

// The parameters of an extern "C" wrapper named as in CONV_FIELDS / POOL_FIELDS, gathered.
#define FC_CONV_GEOM ConvGeom{n, h, w, c, o, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow}
#define FC_POOL_GEOM PoolGeom{n, h, w, c, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow}

// 16-byte vectors for the vectorised tile loads (CUDA's float4/double2 on the device; a plain
// aligned struct when the file is compiled as C++ for the CPU emulation).
#if defined(__CUDACC__)
typedef float4 fc_float4;
typedef double2 fc_double2;
#else
struct alignas(16) fc_float4 { float x, y, z, w; };
struct alignas(16) fc_double2 { double x, y; };
#endif

// Elements of T in one 16-byte vector, and the vector load itself.
template <typename T> struct FcVec;
template <> struct FcVec<float> {
    static constexpr int width = 4;
    static __device__ __forceinline__ void load(const float* p, float* out) {
        const fc_float4 v = *reinterpret_cast<const fc_float4*>(p);
        out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
    }
};
template <> struct FcVec<double> {
    static constexpr int width = 2;
    static __device__ __forceinline__ void load(const double* p, double* out) {
        const fc_double2 v = *reinterpret_cast<const fc_double2*>(p);
        out[0] = v.x; out[1] = v.y;
    }
};

// True when p is 16-byte aligned (vector loads at p + multiples of the vector width are legal).
__device__ __forceinline__ bool fc_aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0ull;
}

// Grid-stride loop over [0, count): correct for any launch size.
#define FC_GRID_STRIDE(i, count) \
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (count); i += blockDim.x * gridDim.x)

template <typename T>
__device__ __forceinline__ T fc_activate(T v, int act) {
    return (act == FC_RELU && v < T(0)) ? T(0) : v;  // NaN passes, as NumPy's maximum
}

// Square root in T's own precision (sqrtf for float).
__device__ __forceinline__ float fc_sqrt(float v) { return sqrtf(v); }
__device__ __forceinline__ double fc_sqrt(double v) { return sqrt(v); }

// -infinity of T (CUDA's bit casts on the device, GCC's builtins under the CPU emulation).
template <typename T> __device__ __forceinline__ T fc_neg_inf();
#if defined(__CUDACC__)
template <> __device__ __forceinline__ float fc_neg_inf<float>() {
    return __int_as_float(0xff800000);
}
template <> __device__ __forceinline__ double fc_neg_inf<double>() {
    return __longlong_as_double(0xfff0000000000000ll);
}
#else
template <> __device__ __forceinline__ float fc_neg_inf<float>() { return -__builtin_huge_valf(); }
template <> __device__ __forceinline__ double fc_neg_inf<double>() { return -__builtin_huge_val(); }
#endif

// Floor division and its remainder for a positive divisor (numerators may be negative).
__device__ __forceinline__ int fc_floordiv(int a, int b) {
    return (a >= 0) ? a / b : -((-a + b - 1) / b);
}

// -- convolution index arithmetic -------------------------------------------------------------
// Input row of output row p and kernel row i: p * sh - pt + i * dh (the same along columns).
__device__ __forceinline__ int fc_in_row(const ConvGeom& g, int p, int i) {
    return p * g.sh - g.pt + i * g.dh;
}
__device__ __forceinline__ int fc_in_col(const ConvGeom& g, int q, int j) {
    return q * g.sw - g.pl + j * g.dw;
}

// x[img, ih, iw, ch] of the padded input: 0 outside the image.
template <typename T>
__device__ __forceinline__ T fc_x_at(const T* __restrict__ x, const ConvGeom& g, int img, int ih,
                                     int iw, int ch) {
    if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) return T(0);
    return x[((img * g.h + ih) * g.w + iw) * g.c + ch];
}

// The virtual im2col patch matrix: row m = (img, p, q) over N*OH*OW output pixels, column
// k = (i, j, ch) over KH*KW*C, in HWIO's order; value x[img, p*sh-pt+i*dh, q*sw-pl+j*dw, ch].
template <typename T>
__device__ __forceinline__ T fc_patch(const T* __restrict__ x, const ConvGeom& g, int m, int k) {
    const int q = m % g.ow;
    const int t = m / g.ow;
    const int p = t % g.oh;
    const int img = t / g.oh;
    const int ch = k % g.c;
    const int ij = k / g.c;
    const int j = ij % g.kw;
    const int i = ij / g.kw;
    return fc_x_at(x, g, img, fc_in_row(g, p, i), fc_in_col(g, q, j), ch);
}

// Output position (p) that input row u reaches through kernel row i, or -1 when none:
// u = p * s - pad + i * d  =>  p = (u + pad - i * d) / s when divisible and 0 <= p < out.
__device__ __forceinline__ int fc_out_index(int u, int pad, int i, int d, int s, int out) {
    const int num = u + pad - i * d;
    if (num < 0 || num % s != 0) return -1;
    const int p = num / s;
    return p < out ? p : -1;
}

// -- pooling index arithmetic -----------------------------------------------------------------
// Windows (p) covering input row u: p * s - pad <= u < p * s - pad + k, 0 <= p < out.
__device__ __forceinline__ void fc_windows_covering(int u, int pad, int k, int s, int out,
                                                    int& first, int& last) {
    first = fc_floordiv(u + pad - k, s) + 1;
    if (first < 0) first = 0;
    last = (u + pad) / s;
    if (last > out - 1) last = out - 1;
}

#endif  // FC_COMMON_CUH
