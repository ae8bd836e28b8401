// layernorm.cu — LayerNorm over rows of [rows, dim] f16, as torch.nn.LayerNorm:
//   mean = Σx/dim, var = Σ(x - mean)²/dim (biased), y = (x - mean) * rsqrt(var + eps) * weight + bias
// Two passes in f32 (the centred second pass avoids the cancellation of E[x²] - E[x]²).
// weight / bias [dim] may be nullptr (treated as 1 / 0). One block per row; y may alias x.
#include "common.cuh"

using namespace lav2;

namespace {
constexpr int LN_REG_CHUNKS = 4;  // 8-element chunks kept in registers per thread
}

// grid (rows), block 256 (any multiple of 32 up to 1024), no dynamic smem.
extern "C" __global__ void __launch_bounds__(1024)
    layernorm_f16(const __half* x, const __half* weight, const __half* bias, __half* y, int rows, int dim,
                  float eps) {
    __shared__ float scratch[32];
    const int row = blockIdx.x;
    if (row >= rows) return;
    const __half* xr = x + (long long)row * dim;
    __half* yr = y + (long long)row * dim;
    const int tid = threadIdx.x, nt = blockDim.x;
    const bool vec = (dim & 7) == 0 && aligned16(xr) && aligned16(yr) && (!weight || aligned16(weight)) &&
                     (!bias || aligned16(bias));
    if (vec) {
        const int nck = dim >> 3;
        uint4 keep[LN_REG_CHUNKS];
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < LN_REG_CHUNKS; ++i) {
            const int c = tid + i * nt;
            if (c < nck) {
                keep[i] = reinterpret_cast<const uint4*>(xr)[c];
                float f[8];
                unpack8(keep[i], f);
#pragma unroll
                for (int j = 0; j < 8; ++j) s += f[j];
            }
        }
        for (int c = tid + LN_REG_CHUNKS * nt; c < nck; c += nt) {
            float f[8];
            unpack8(reinterpret_cast<const uint4*>(xr)[c], f);
#pragma unroll
            for (int j = 0; j < 8; ++j) s += f[j];
        }
        const float mean = block_sum(s, scratch) / (float)dim;
        float v = 0.0f;
#pragma unroll
        for (int i = 0; i < LN_REG_CHUNKS; ++i) {
            const int c = tid + i * nt;
            if (c < nck) {
                float f[8];
                unpack8(keep[i], f);
#pragma unroll
                for (int j = 0; j < 8; ++j) v = fmaf(f[j] - mean, f[j] - mean, v);
            }
        }
        for (int c = tid + LN_REG_CHUNKS * nt; c < nck; c += nt) {
            float f[8];
            unpack8(reinterpret_cast<const uint4*>(xr)[c], f);
#pragma unroll
            for (int j = 0; j < 8; ++j) v = fmaf(f[j] - mean, f[j] - mean, v);
        }
        const float inv = rsqrtf(block_sum(v, scratch) / (float)dim + eps);
        auto emit = [&](int c, const uint4& raw) {
            float f[8], w[8], b[8];
            unpack8(raw, f);
            if (weight) unpack8(__ldg(reinterpret_cast<const uint4*>(weight) + c), w);
            if (bias) unpack8(__ldg(reinterpret_cast<const uint4*>(bias) + c), b);
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                float o = (f[j] - mean) * inv;
                if (weight) o *= w[j];
                if (bias) o += b[j];
                f[j] = o;
            }
            reinterpret_cast<uint4*>(yr)[c] = pack8(f);
        };
        // Each thread reads and writes only its own chunks, so y may alias x.
#pragma unroll
        for (int i = 0; i < LN_REG_CHUNKS; ++i) {
            const int c = tid + i * nt;
            if (c < nck) emit(c, keep[i]);
        }
        for (int c = tid + LN_REG_CHUNKS * nt; c < nck; c += nt) emit(c, reinterpret_cast<const uint4*>(xr)[c]);
    } else {
        float s = 0.0f;
        for (int i = tid; i < dim; i += nt) s += __half2float(xr[i]);
        const float mean = block_sum(s, scratch) / (float)dim;
        float v = 0.0f;
        for (int i = tid; i < dim; i += nt) {
            const float d = __half2float(xr[i]) - mean;
            v = fmaf(d, d, v);
        }
        const float inv = rsqrtf(block_sum(v, scratch) / (float)dim + eps);
        for (int i = tid; i < dim; i += nt) {
            float o = (__half2float(xr[i]) - mean) * inv;
            if (weight) o *= __half2float(weight[i]);
            if (bias) o += __half2float(bias[i]);
            yr[i] = __float2half_rn(o);
        }
    }
}
