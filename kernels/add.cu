// add.cu — elementwise sums on f16, f32 math, grid-stride (block 256, grid min(ceil(n / 2048), 4096)):
//   add_f16                 out = a + b
//   add_broadcast_rows_f16  out[r, :] = x[r, :] + row[:]   (x, out [rows, dim]; row [dim])
// Either may run in place (out == an input).
#include "common.cuh"

using namespace lav2;

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
