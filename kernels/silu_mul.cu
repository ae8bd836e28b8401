// silu_mul.cu — the SwiGLU between w1/w3 and w2 on f16, f32 math, grid-stride
// (block 256, grid min(ceil(n / 2048), 4096)); may run in place.
#include "common.cuh"

using namespace lav2;

namespace {
LAV2_DEV float silu(float g) { return g / (1.0f + expf(-g)); }
}  // namespace

// out = silu(gate) * up, elementwise over n; the SwiGLU between w1/w3 and w2. In place is fine.
extern "C" __global__ void silu_mul_f16(const __half* gate, const __half* up, __half* out, int n) {
    const int stride = gridDim.x * blockDim.x;
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    if ((n & 7) == 0 && aligned16(gate) && aligned16(up) && aligned16(out)) {
        const int n8 = n >> 3;
        for (int i = tid; i < n8; i += stride) {
            float g[8], u[8];
            unpack8(reinterpret_cast<const uint4*>(gate)[i], g);
            unpack8(reinterpret_cast<const uint4*>(up)[i], u);
#pragma unroll
            for (int j = 0; j < 8; ++j) g[j] = silu(g[j]) * u[j];
            reinterpret_cast<uint4*>(out)[i] = pack8(g);
        }
    } else {
        for (int i = tid; i < n; i += stride)
            out[i] = __float2half_rn(silu(__half2float(gate[i])) * __half2float(up[i]));
    }
}
