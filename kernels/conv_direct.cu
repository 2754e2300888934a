// Direct convolution, NHWC x HWIO, one thread per output element of each pass (grid-stride
// loops over the flat index, so neighbouring threads take neighbouring channels: coalesced
// weight and gradient reads, broadcast input reads):
//   forward          y[img, p, q, oc] = act(b[oc] + sum_{i,j,ch} x[img, p*sh-pt+i*dh,
//                                       q*sw-pl+j*dw, ch] * w[i, j, ch, oc])
//   backward-data    dx[img, u, v, ch] = sum over the taps (i, j) and output pixels (p, q) with
//                    u = p*sh-pt+i*dh, v = q*sw-pl+j*dw of sum_oc dy[img, p, q, oc] * w[i, j, ch, oc]
//                    (a gather: no atomics)
//   backward-weight  dw[i, j, ch, oc] = sum over pixels of x[...] * dy[img, p, q, oc], the pixels
//                    split into chunks of `chunk` over blockIdx.y, each chunk's sum added to dw
//                    (zeroed by the caller) atomically.
// Geometry: CONV_FIELDS (fastconv.geometry); out-of-image taps read zeros (padding).
#include "common.cuh"

template <typename T>
__device__ void forward(const T* __restrict__ x, const T* __restrict__ wgt,
                        const T* __restrict__ bias, T* __restrict__ y, int has_bias, int act,
                        ConvGeom g) {
    FC_GRID_STRIDE(idx, g.n * g.oh * g.ow * g.o) {
        const int oc = idx % g.o;
        const int m = idx / g.o;
        const int q = m % g.ow;
        const int p = (m / g.ow) % g.oh;
        const int img = m / (g.ow * g.oh);
        T acc = has_bias ? bias[oc] : T(0);
        for (int i = 0; i < g.kh; ++i) {
            const int ih = fc_in_row(g, p, i);
            if (ih < 0 || ih >= g.h) continue;
            for (int j = 0; j < g.kw; ++j) {
                const int iw = fc_in_col(g, q, j);
                if (iw < 0 || iw >= g.w) continue;
                const T* xp = x + ((img * g.h + ih) * g.w + iw) * g.c;
                const T* wp = wgt + (i * g.kw + j) * g.c * g.o + oc;
                for (int ch = 0; ch < g.c; ++ch) acc += xp[ch] * wp[ch * g.o];
            }
        }
        y[idx] = fc_activate(acc, act);
    }
}

template <typename T>
__device__ void backward_data(const T* __restrict__ dy, const T* __restrict__ wgt,
                              T* __restrict__ dx, ConvGeom g) {
    FC_GRID_STRIDE(idx, g.n * g.h * g.w * g.c) {
        const int ch = idx % g.c;
        const int t = idx / g.c;
        const int v = t % g.w;
        const int u = (t / g.w) % g.h;
        const int img = t / (g.w * g.h);
        T acc = T(0);
        for (int i = 0; i < g.kh; ++i) {
            const int p = fc_out_index(u, g.pt, i, g.dh, g.sh, g.oh);
            if (p < 0) continue;
            for (int j = 0; j < g.kw; ++j) {
                const int q = fc_out_index(v, g.pl, j, g.dw, g.sw, g.ow);
                if (q < 0) continue;
                const T* dyp = dy + ((img * g.oh + p) * g.ow + q) * g.o;
                const T* wp = wgt + ((i * g.kw + j) * g.c + ch) * g.o;
                for (int oc = 0; oc < g.o; ++oc) acc += dyp[oc] * wp[oc];
            }
        }
        dx[idx] = acc;
    }
}

template <typename T>
__device__ void backward_weight(const T* __restrict__ x, const T* __restrict__ dy,
                                T* __restrict__ dwgt, int chunk, ConvGeom g) {
    const int pixels = g.n * g.oh * g.ow;
    const int r_begin = blockIdx.y * chunk;
    const int r_end = r_begin + chunk < pixels ? r_begin + chunk : pixels;
    FC_GRID_STRIDE(idx, g.kh * g.kw * g.c * g.o) {
        const int oc = idx % g.o;
        const int t = idx / g.o;
        const int ch = t % g.c;
        const int j = (t / g.c) % g.kw;
        const int i = t / (g.c * g.kw);
        T acc = T(0);
        for (int r = r_begin; r < r_end; ++r) {
            const int q = r % g.ow;
            const int p = (r / g.ow) % g.oh;
            const int img = r / (g.ow * g.oh);
            const T xv = fc_x_at(x, g, img, fc_in_row(g, p, i), fc_in_col(g, q, j), ch);
            acc += xv * dy[r * g.o + oc];
        }
        if (r_begin < r_end) atomicAdd(&dwgt[idx], acc);
    }
}

extern "C" __global__ void fc_direct_forward_f32(const float* x, const float* wgt, const float* bias, float* y, int has_bias, int act, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    forward<float>(x, wgt, bias, y, has_bias, act, FC_CONV_GEOM);
}
extern "C" __global__ void fc_direct_forward_f64(const double* x, const double* wgt, const double* bias, double* y, int has_bias, int act, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    forward<double>(x, wgt, bias, y, has_bias, act, FC_CONV_GEOM);
}
extern "C" __global__ void fc_direct_backward_data_f32(const float* dy, const float* wgt, float* dx, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    backward_data<float>(dy, wgt, dx, FC_CONV_GEOM);
}
extern "C" __global__ void fc_direct_backward_data_f64(const double* dy, const double* wgt, double* dx, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    backward_data<double>(dy, wgt, dx, FC_CONV_GEOM);
}
extern "C" __global__ void fc_direct_backward_weight_f32(const float* x, const float* dy, float* dwgt, int chunk, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    backward_weight<float>(x, dy, dwgt, chunk, FC_CONV_GEOM);
}
extern "C" __global__ void fc_direct_backward_weight_f64(const double* x, const double* dy, double* dwgt, int chunk, int n, int h, int w, int c, int o, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr, int oh, int ow) {
    backward_weight<double>(x, dy, dwgt, chunk, FC_CONV_GEOM);
}
