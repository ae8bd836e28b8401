// synthetic.cu — benchmark weights generated on the device, bit-identical to src/tensor.rs
// (`Synthetic::element`): element i depends only on (seed, i), through SplitMix64 of seed + (i+1)·φ.
//   synthetic_uniform_f16: f16((2u − 1)·amp), u = (hash >> 40) / 2^24 (f32 math, round to nearest even)
//   synthetic_bytes_u8:    int8 ? (hash mod 255) − 127 (as a byte) : low byte of the hash
//   fill_u16:              every 16-bit element = value (f16 constants, poison patterns)
// Sizes are 64-bit (`long long n`): a single tensor may exceed 2^31 elements. Grid-stride: any grid;
// suggested block 256, grid min(ceil(n / 256), 8192).
#include "common.cuh"

using namespace lav2;

// __host__ too, so a host-side check can compile the very same element functions.
#define LAV2_HD __host__ __device__ __forceinline__

namespace {

LAV2_HD unsigned long long synthetic_hash(unsigned long long seed, unsigned long long i) {
    unsigned long long z = seed + (i + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Separate roundings, never contracted into an FMA: the host reference computes
// `(2.0 * u - 1.0) * amp` in f32 with two roundings (2u is exact, so the order of the first two
// operations cannot matter; the product with amp must be rounded on its own).
LAV2_HD float synthetic_uniform_value(unsigned long long seed, unsigned long long i, float amp) {
    const unsigned long long h = synthetic_hash(seed, i);
    // h >> 40 < 2^24: exact in f32, and the scaling by 2^-24 is exact too.
    const float u = (float)(h >> 40) * (1.0f / 16777216.0f);
#ifdef __CUDA_ARCH__
    return __fmul_rn(__fsub_rn(__fmul_rn(2.0f, u), 1.0f), amp);
#else
    volatile float two_u = 2.0f * u;
    volatile float centered = two_u - 1.0f;
    return centered * amp;
#endif
}

LAV2_HD unsigned char synthetic_byte(unsigned long long seed, unsigned long long i, bool int8) {
    const unsigned long long h = synthetic_hash(seed, i);
    if (int8) return (unsigned char)(signed char)((int)(h % 255ull) - 127);
    return (unsigned char)(h & 0xffull);
}

}  // namespace

extern "C" __global__ void synthetic_uniform_f16(__half* out, long long n, unsigned long long seed, float amp) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = __float2half_rn(synthetic_uniform_value(seed, (unsigned long long)i, amp));
}

extern "C" __global__ void synthetic_bytes_u8(unsigned char* out, long long n, unsigned long long seed, int int8) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = synthetic_byte(seed, (unsigned long long)i, int8 != 0);
}

extern "C" __global__ void fill_u16(unsigned short* out, long long n, unsigned int value) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    const unsigned short v = (unsigned short)value;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = v;
}
