// activation.cu — elementwise ops on f16 tensors, f32 math, grid-stride (any grid; e.g. block 256,
// grid min(ceil(n / 2048), 4096)). Every op may run in place (out == an input).
//   gelu_f16        out = 0.5·x·(1 + erf(x/√2))      exact GELU (visual-query blocks)
//   quick_gelu_f16  out = x·sigmoid(1.702·x)         CLIP's QuickGELU
//   add_f16         out = a + b
//   add_broadcast_rows_f16  out[r, :] = x[r, :] + row[:]   (x, out [rows, dim]; row [dim])
// silu_mul_f16 lives in matmul.cu beside the FFN matmuls.
#include "common.cuh"

using namespace lav2;

namespace {

struct Gelu {
    LAV2_DEV float operator()(float x) const { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
};
struct QuickGelu {
    LAV2_DEV float operator()(float x) const { return x / (1.0f + expf(-1.702f * x)); }
};

template <typename F>
LAV2_DEV void unary(const __half* x, __half* out, int n, F f) {
    const int stride = gridDim.x * blockDim.x;
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    if ((n & 7) == 0 && aligned16(x) && aligned16(out)) {
        for (int i = tid; i < (n >> 3); i += stride) {
            float v[8];
            unpack8(reinterpret_cast<const uint4*>(x)[i], v);
#pragma unroll
            for (int j = 0; j < 8; ++j) v[j] = f(v[j]);
            reinterpret_cast<uint4*>(out)[i] = pack8(v);
        }
    } else {
        for (int i = tid; i < n; i += stride) out[i] = __float2half_rn(f(__half2float(x[i])));
    }
}

}  // namespace

extern "C" __global__ void gelu_f16(const __half* x, __half* out, int n) { unary(x, out, n, Gelu()); }

extern "C" __global__ void quick_gelu_f16(const __half* x, __half* out, int n) { unary(x, out, n, QuickGelu()); }

extern "C" __global__ void add_f16(const __half* a, const __half* b, __half* out, int n) {
    const int stride = gridDim.x * blockDim.x;
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    if ((n & 7) == 0 && aligned16(a) && aligned16(b) && aligned16(out)) {
        for (int i = tid; i < (n >> 3); i += stride) {
            float u[8], v[8];
            unpack8(reinterpret_cast<const uint4*>(a)[i], u);
            unpack8(reinterpret_cast<const uint4*>(b)[i], v);
#pragma unroll
            for (int j = 0; j < 8; ++j) u[j] += v[j];
            reinterpret_cast<uint4*>(out)[i] = pack8(u);
        }
    } else {
        for (int i = tid; i < n; i += stride) out[i] = __float2half_rn(__half2float(a[i]) + __half2float(b[i]));
    }
}

extern "C" __global__ void add_broadcast_rows_f16(const __half* x, const __half* row, __half* out, int rows,
                                                  int dim) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if ((dim & 7) == 0 && aligned16(x) && aligned16(row) && aligned16(out)) {
        const int d8 = dim >> 3;
        const long long n8 = (long long)rows * d8;
        for (long long i = tid; i < n8; i += stride) {
            float u[8], v[8];
            unpack8(reinterpret_cast<const uint4*>(x)[i], u);
            unpack8(__ldg(reinterpret_cast<const uint4*>(row) + (int)(i % d8)), v);
#pragma unroll
            for (int j = 0; j < 8; ++j) u[j] += v[j];
            reinterpret_cast<uint4*>(out)[i] = pack8(u);
        }
    } else {
        const long long n = (long long)rows * dim;
        for (long long i = tid; i < n; i += stride)
            out[i] = __float2half_rn(__half2float(x[i]) + __half2float(row[(int)(i % dim)]));
    }
}
