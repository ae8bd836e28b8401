// softmax.cu — numerically stable softmax over each row of a row-major [rows, cols] f32 matrix, in
// place: x = exp(x - max) / Σ exp(x - max). One pass computes max and sum together (online
// rescaling), a second writes the result. A row of all -inf yields NaN, as torch does.
#include "common.cuh"

using namespace lav2;

// grid (rows), block 256..1024 (multiple of 32; 1024 for vocab-sized rows), no dynamic smem.
extern "C" __global__ void __launch_bounds__(1024) softmax_rows_f32(float* x, int rows, int cols) {
    __shared__ float sm_m[32], sm_s[32];
    const int row = blockIdx.x;
    if (row >= rows) return;
    float* xr = x + (long long)row * cols;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;

    float m = LAV2_NEG_INF, s = 0.0f;
    for (int i = tid; i < cols; i += blockDim.x) {
        const float v = xr[i];
        if (v > m) {
            s = s * expf(m - v) + 1.0f;  // m == -inf: expf(-inf) = 0
            m = v;
        } else if (m != LAV2_NEG_INF) {  // both -inf would give expf(nan)
            s += expf(v - m);
        }
    }
    // Merge (m, s) pairs: warp, then block.
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        const float mn = fmaxf(m, m2);
        s = (mn == LAV2_NEG_INF) ? 0.0f : s * expf(m - mn) + s2 * expf(m2 - mn);
        m = mn;
    }
    if (lane == 0) {
        sm_m[warp] = m;
        sm_s[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
        m = lane < nw ? sm_m[lane] : LAV2_NEG_INF;
        s = lane < nw ? sm_s[lane] : 0.0f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
            const float mn = fmaxf(m, m2);
            s = (mn == LAV2_NEG_INF) ? 0.0f : s * expf(m - mn) + s2 * expf(m2 - mn);
            m = mn;
        }
        if (lane == 0) {
            sm_m[0] = m;
            sm_s[0] = s;
        }
    }
    __syncthreads();
    m = sm_m[0];
    const float inv = 1.0f / sm_s[0];
    for (int i = tid; i < cols; i += blockDim.x) xr[i] = expf(xr[i] - m) * inv;
}
