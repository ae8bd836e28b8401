// What lav2's own kernels compile to beyond the per-family tests: CUDA math library functions
// (expf, exp2f, logf, erff, tanhf, sinf/cosf incl. the large-argument path, rsqrtf, powf),
// __syncthreads_count/and/or (bar.red), __floats2half2_rn (cvt.rn.f16x2.f32), __saturatef
// (cvt.sat), __ldg vector loads (ld.global.nc.v4), 16-bit integers, 64-bit conversions.
#include <cuda_fp16.h>
#include <cstdint>

// out: [10][n]
extern "C" __global__ void mathlib(const float* in, const float* in2, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = in[i], y = in2[i];
    out[0 * n + i] = expf(x);
    out[1 * n + i] = exp2f(x);
    out[2 * n + i] = logf(fabsf(x));
    out[3 * n + i] = erff(x);
    out[4 * n + i] = tanhf(x);
    out[5 * n + i] = sinf(y);
    out[6 * n + i] = cosf(y);
    out[7 * n + i] = rsqrtf(fabsf(x));
    out[8 * n + i] = powf(fabsf(x), y * 0.01f);
    out[9 * n + i] = __saturatef(x);
}

// out: [n] per thread: count, and, or of (in[t] & 1) over the block, then the __floats2half2_rn
// packing of (a, b) and f16 round trips. outh: [n] u32
extern "C" __global__ void block_votes_and_halves(const int* in, const float* a, const float* b,
                                                  int* out, unsigned* outh) {
    int t = threadIdx.x;
    int i = blockIdx.x * blockDim.x + t;
    int p = in[i] & 1;
    int cnt = __syncthreads_count(p);
    int all = __syncthreads_and(p | (in[i] & 2));
    int any = __syncthreads_or(p & (in[i] >> 2));
    out[3 * i] = cnt;
    out[3 * i + 1] = all != 0;
    out[3 * i + 2] = any != 0;
    __half2 h = __floats2half2_rn(a[i], b[i]);
    outh[i] = *reinterpret_cast<unsigned*>(&h);
}

// __ldg float4 / int2 loads and vector stores; 16-bit arithmetic; 64-bit conversions.
// out4: [n] float4 = in4 * 2 reversed lanes; o16: [n] u16 results packed per thread as 4 x u16;
// o64: [n][6] u64
extern "C" __global__ void vec_and_narrow(const float4* in4, const short* s16, const unsigned long long* u64,
                                          float4* out4, unsigned short* o16, unsigned long long* o64, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float4 v = __ldg(&in4[i]);
    out4[i] = make_float4(v.w * 2.0f, v.z * 2.0f, v.y * 2.0f, v.x * 2.0f);
    short a = s16[2 * i], b = s16[2 * i + 1];
    o16[4 * i + 0] = (unsigned short)(short)(a + b);
    o16[4 * i + 1] = (unsigned short)(a & b);
    o16[4 * i + 2] = (unsigned short)((unsigned short)a >> (b & 15));
    o16[4 * i + 3] = (unsigned short)(a == b ? a : (short)(a * 3));
    unsigned long long u = u64[i];
    long long s = (long long)u;
    float fu = (float)u;
    double du = (double)u, ds = (double)s;
    float f = __uint_as_float((unsigned)(u >> 32) & 0x5fffffffu);  // positive, < 2^64
    o64[6 * i + 0] = __float_as_uint(fu);
    o64[6 * i + 1] = __double_as_longlong(du);
    o64[6 * i + 2] = __double_as_longlong(ds);
    o64[6 * i + 3] = (unsigned long long)f;
    o64[6 * i + 4] = (unsigned long long)(double)f;
    o64[6 * i + 5] = __double_as_longlong((double)f);
}
