// rmsnorm.cu — fused residual add + RMSNorm over rows of a row-major [rows, dim] f16 matrix:
//   residual += x                                   (skipped when x == nullptr; stored as f16)
//   y = residual * rsqrt(mean(residual^2) + eps) * weight
// The sum of squares uses the f16-rounded residual, i.e. exactly the value later layers will read.
// When residual == nullptr the row is x itself (plain RMSNorm, nothing stored).
// One block per row; weight is [dim]. y may not alias residual/x.
#include "common.cuh"

using namespace lav2;

namespace {

// Chunks of 8 elements kept in registers per thread between the two passes; rows longer than
// RMS_REG_CHUNKS * 8 * blockDim.x re-read the tail from global (still correct).
constexpr int RMS_REG_CHUNKS = 4;

__device__ __forceinline__ void rms_fast(const __half* __restrict__ x, __half* __restrict__ residual,
                                         __half* __restrict__ y, const __half* __restrict__ weight,
                                         int dim, float eps) {
    __shared__ float scratch[32];
    const int nchunks = dim >> 3;
    const int tid = threadIdx.x, nt = blockDim.x;
    const __half* src = residual ? residual : x;
    const bool add = (x != nullptr) && (residual != nullptr);

    uint4 keep[RMS_REG_CHUNKS];
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < RMS_REG_CHUNKS; ++i) {
        const int c = tid + i * nt;
        if (c < nchunks) {
            uint4 r = *reinterpret_cast<const uint4*>(src + c * 8);
            if (add) {
                float a[8], b[8];
                unpack8(r, a);
                unpack8(*reinterpret_cast<const uint4*>(x + c * 8), b);
#pragma unroll
                for (int j = 0; j < 8; ++j) a[j] += b[j];
                r = pack8(a);
                *reinterpret_cast<uint4*>(residual + c * 8) = r;
            }
            float f[8];
            unpack8(r, f);  // the rounded values: what was stored
#pragma unroll
            for (int j = 0; j < 8; ++j) ss = fmaf(f[j], f[j], ss);
            keep[i] = r;
        }
    }
    for (int c = tid + RMS_REG_CHUNKS * nt; c < nchunks; c += nt) {
        uint4 r = *reinterpret_cast<const uint4*>(src + c * 8);
        if (add) {
            float a[8], b[8];
            unpack8(r, a);
            unpack8(*reinterpret_cast<const uint4*>(x + c * 8), b);
#pragma unroll
            for (int j = 0; j < 8; ++j) a[j] += b[j];
            r = pack8(a);
            *reinterpret_cast<uint4*>(residual + c * 8) = r;
        }
        float f[8];
        unpack8(r, f);
#pragma unroll
        for (int j = 0; j < 8; ++j) ss = fmaf(f[j], f[j], ss);
    }

    const float inv = rsqrtf(block_sum(ss, scratch) / (float)dim + eps);

#pragma unroll
    for (int i = 0; i < RMS_REG_CHUNKS; ++i) {
        const int c = tid + i * nt;
        if (c < nchunks) {
            float f[8], w[8];
            unpack8(keep[i], f);
            unpack8(__ldg(reinterpret_cast<const uint4*>(weight) + c), w);
#pragma unroll
            for (int j = 0; j < 8; ++j) f[j] = f[j] * inv * w[j];
            *reinterpret_cast<uint4*>(y + c * 8) = pack8(f);
        }
    }
    // Each thread re-reads only chunks it wrote itself, so no barrier is needed.
    for (int c = tid + RMS_REG_CHUNKS * nt; c < nchunks; c += nt) {
        float f[8], w[8];
        unpack8(*reinterpret_cast<const uint4*>((residual ? residual : x) + c * 8), f);
        unpack8(__ldg(reinterpret_cast<const uint4*>(weight) + c), w);
#pragma unroll
        for (int j = 0; j < 8; ++j) f[j] = f[j] * inv * w[j];
        *reinterpret_cast<uint4*>(y + c * 8) = pack8(f);
    }
}

// Any dim / alignment: scalar loads, two passes over global memory.
__device__ __forceinline__ void rms_scalar(const __half* x, __half* residual, __half* y,
                                           const __half* weight, int dim, float eps) {
    __shared__ float scratch[32];
    const bool add = (x != nullptr) && (residual != nullptr);
    const __half* src = residual ? residual : x;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        __half r = src[i];
        if (add) {
            r = __float2half_rn(__half2float(r) + __half2float(x[i]));
            residual[i] = r;
        }
        const float f = __half2float(r);
        ss = fmaf(f, f, ss);
    }
    const float inv = rsqrtf(block_sum(ss, scratch) / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        y[i] = __float2half_rn(__half2float(src[i]) * inv * __half2float(weight[i]));
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(1024)
    rmsnorm_fused_f16(const __half* x, __half* residual, __half* y, const __half* weight, int rows,
                      int dim, float eps) {
    const int row = blockIdx.x;
    if (row >= rows) return;
    const long long off = (long long)row * dim;
    const __half* xr = x ? x + off : nullptr;
    __half* rr = residual ? residual + off : nullptr;
    const bool vec = (dim & 7) == 0 && (!xr || aligned16(xr)) && (!rr || aligned16(rr)) &&
                     aligned16(y + off) && aligned16(weight);
    if (vec)
        rms_fast(xr, rr, y + off, weight, dim, eps);
    else
        rms_scalar(xr, rr, y + off, weight, dim, eps);
}

// Baseline for benchmarks: same semantics, scalar loads, two passes over global memory.
extern "C" __global__ void __launch_bounds__(1024)
    rmsnorm_naive_f16(const __half* x, __half* residual, __half* y, const __half* weight, int rows,
                      int dim, float eps) {
    const int row = blockIdx.x;
    if (row >= rows) return;
    const long long off = (long long)row * dim;
    rms_scalar(x ? x + off : nullptr, residual ? residual + off : nullptr, y + off, weight, dim, eps);
}
