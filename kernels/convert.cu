// convert.cu — the backend's own f32 <-> f16 conversions (weight uploads, exact f32 copies of
// weights a graph reads in f32); not an op of the graph.
#include "common.cuh"

using namespace lav2;

// Elementwise, grid-stride; any grid works (e.g. block 256, grid min(ceil(n / 2048), 4096)).
extern "C" __global__ void convert_f32_to_f16(const float* in, __half* out, int n) {
    const int stride = gridDim.x * blockDim.x;
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    if ((n & 7) == 0 && aligned16(in) && aligned16(out)) {
        for (int i = tid; i < (n >> 3); i += stride) {
            const float4 a = reinterpret_cast<const float4*>(in)[2 * i];
            const float4 b = reinterpret_cast<const float4*>(in)[2 * i + 1];
            const float f[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
            reinterpret_cast<uint4*>(out)[i] = pack8(f);
        }
    } else {
        for (int i = tid; i < n; i += stride) out[i] = __float2half_rn(in[i]);
    }
}

extern "C" __global__ void convert_f16_to_f32(const __half* in, float* out, int n) {
    const int stride = gridDim.x * blockDim.x;
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    if ((n & 7) == 0 && aligned16(in) && aligned16(out)) {
        for (int i = tid; i < (n >> 3); i += stride) {
            float f[8];
            unpack8(reinterpret_cast<const uint4*>(in)[i], f);
            reinterpret_cast<float4*>(out)[2 * i] = make_float4(f[0], f[1], f[2], f[3]);
            reinterpret_cast<float4*>(out)[2 * i + 1] = make_float4(f[4], f[5], f[6], f[7]);
        }
    } else {
        for (int i = tid; i < n; i += stride) out[i] = __half2float(in[i]);
    }
}
