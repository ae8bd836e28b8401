// common.cuh — helpers shared by every kernel file: 16-byte vector loads/stores of __half, warp and
// block reductions, and thin wrappers over the PTX instructions the tensor-core kernels use
// (cp.async, ldmatrix, mma.sync m16n8k16). No C/C++ standard header is used, so the same sources
// compile under NVRTC; NVRTC 13 does not ship <cuda_fp16.h> either, so when it cannot be found (no -I
// to a CUDA include folder) the few __half operations the kernels use are defined here.
#pragma once

#if defined(__CUDACC_RTC__) && !__has_include(<cuda_fp16.h>)
// Layout-compatible stand-ins for cuda_fp16.h's __half / __half2 (2 and 4 bytes, x in the low half).
struct __align__(2) __half {
    unsigned short x_;
};
struct __align__(4) __half2 {
    __half x, y;
};
__device__ __forceinline__ float __half2float(__half h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.x_));
    return f;
}
__device__ __forceinline__ __half __float2half_rn(float f) {
    __half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x_) : "f"(f));
    return h;
}
__device__ __forceinline__ __half2 __floats2half2_rn(float a, float b) {
    __half2 r;
    r.x = __float2half_rn(a);
    r.y = __float2half_rn(b);
    return r;
}
__device__ __forceinline__ float2 __half22float2(__half2 h) {
    return make_float2(__half2float(h.x), __half2float(h.y));
}
#else
#include <cuda_fp16.h>
#endif

#define LAV2_DEV __device__ __forceinline__

// NVRTC has neither <math.h> nor <cfloat>; spell the constants out.
#define LAV2_NEG_INF (__int_as_float(0xff800000))
#define LAV2_POS_INF (__int_as_float(0x7f800000))
// A finite "minus infinity" for running maxima: exp2f(LAV2_NEG_BIG - m) underflows to 0 for any
// realistic m, while (LAV2_NEG_BIG - LAV2_NEG_BIG) stays 0 instead of the NaN that inf - inf gives.
#define LAV2_NEG_BIG (-1.0e30f)
#define LAV2_LOG2E 1.4426950408889634f
#define LAV2_INT_MAX 2147483647

namespace lav2 {

typedef unsigned int u32;
typedef unsigned long long u64;

LAV2_DEV int ceil_div(int a, int b) { return (a + b - 1) / b; }

LAV2_DEV bool aligned16(const void* p) { return (reinterpret_cast<u64>(p) & 15ull) == 0; }
LAV2_DEV bool aligned8(const void* p) { return (reinterpret_cast<u64>(p) & 7ull) == 0; }
LAV2_DEV bool aligned4(const void* p) { return (reinterpret_cast<u64>(p) & 3ull) == 0; }

// ---------------------------------------------------------------------------------------------
// 8 x __half <-> uint4 (one 16-byte transaction)
// ---------------------------------------------------------------------------------------------

LAV2_DEV void unpack8(const uint4& v, float (&f)[8]) {
    const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        float2 t = __half22float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

LAV2_DEV uint4 pack8(const float (&f)[8]) {
    uint4 v;
    __half2* h = reinterpret_cast<__half2*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
    return v;
}

// Read-only, not kept in L1: for weights that are streamed once per step and would otherwise evict
// the activations every warp re-reads.
LAV2_DEV uint4 ld_stream16(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

LAV2_DEV uint4 ld_nc16(const void* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------

LAV2_DEV float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

LAV2_DEV float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the whole block; every thread gets the result. blockDim.x must be a multiple of 32
// (<= 1024). `scratch` holds 32 floats; the trailing barrier lets callers reuse it right away.
LAV2_DEV float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < nwarps ? scratch[lane] : 0.0f;
    t = warp_sum(t);
    __syncthreads();
    return t;
}

LAV2_DEV float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < nwarps ? scratch[lane] : LAV2_NEG_INF;
    t = warp_max(t);
    __syncthreads();
    return t;
}

// ---------------------------------------------------------------------------------------------
// Ampere+ asynchronous copies and tensor-core fragments (valid for sm_80 PTX and sm_90a)
// ---------------------------------------------------------------------------------------------

LAV2_DEV u32 smem_u32(const void* p) { return static_cast<u32>(__cvta_generic_to_shared(p)); }

// 16-byte global->shared copy; src_bytes < 16 zero-fills the tail (0 = pure zero fill, no read).
LAV2_DEV void cp_async16(void* smem, const void* gmem, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
                 "r"(src_bytes));
}
LAV2_DEV void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
LAV2_DEV void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

LAV2_DEV void ldmatrix_x4(u32& r0, u32& r1, u32& r2, u32& r3, const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_u32(smem)));
}
LAV2_DEV void ldmatrix_x4_trans(u32& r0, u32& r1, u32& r2, u32& r3, const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_u32(smem)));
}

// D = A(16x16, row) * B(16x8, col) + D, f16 inputs, f32 accumulators.
LAV2_DEV void mma_16816(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

LAV2_DEV u32 pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<u32*>(&h);
}

// Tensor-core GEMM tiles (linear.cu, linear_quant.cu): shared tiles are [rows][TC_BK halves] with
// the four 16-byte chunks of a row XOR-swizzled by (row >> 1) & 3, so both the 16-byte stores and
// the 8-row ldmatrix reads hit 32 distinct banks without padding.
constexpr int TC_BK = 32;
// The two tensor-core GEMM tilings of linear.cu and linear_quant.cu (square block tiles), and the
// threads each is written for; the launch sizes its grid by the same constants (build.rs).
constexpr int GEMM128_TILE = 128;
constexpr int GEMM128_THREADS = 256;
constexpr int GEMM64_TILE = 64;
constexpr int GEMM64_THREADS = 128;

LAV2_DEV int tc_swz(int row, int chunk) { return row * TC_BK + ((chunk ^ ((row >> 1) & 3)) << 3); }

// One shared-memory stage of a warp's MT x NT tile of m16n8k16 MMAs: A rows from sA (warp row wm,
// TM rows a warp), B rows (weights, [n][k]) from sB (warp column wn, TN columns a warp).
template <int MT, int NT, int TM, int TN>
LAV2_DEV void tc_stage_mma(float (&acc)[MT][NT][4], const __half* sA, const __half* sB, int wm, int wn,
                           int lane) {
#pragma unroll
    for (int kk = 0; kk < TC_BK / 16; ++kk) {
        u32 af[MT][4];
        u32 bf[NT][2];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            const int row = wm * TM + mt * 16 + (lane & 15);
            ldmatrix_x4(af[mt][0], af[mt][1], af[mt][2], af[mt][3], sA + tc_swz(row, kk * 2 + (lane >> 4)));
        }
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
            const int row = wn * TN + np * 16 + (lane & 7) + ((lane >> 4) << 3);
            ldmatrix_x4(bf[2 * np][0], bf[2 * np][1], bf[2 * np + 1][0], bf[2 * np + 1][1],
                        sB + tc_swz(row, kk * 2 + ((lane >> 3) & 1)));
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) mma_16816(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
    }
}

// Stores of a matmul output element type (f16 activations or f32 logits).
template <typename T>
struct Out;
template <>
struct Out<__half> {
    static LAV2_DEV void store(__half* p, float v) { *p = __float2half_rn(v); }
    // Two adjacent elements; caller guarantees 4-byte alignment.
    static LAV2_DEV void store2(__half* p, float a, float b) {
        *reinterpret_cast<__half2*>(p) = __floats2half2_rn(a, b);
    }
    static constexpr int align2 = 4;
};
template <>
struct Out<float> {
    static LAV2_DEV void store(float* p, float v) { *p = v; }
    static LAV2_DEV void store2(float* p, float a, float b) { *reinterpret_cast<float2*>(p) = make_float2(a, b); }
    static constexpr int align2 = 8;
};

// A linear layer's output element: the accumulated product plus the feature's bias, if any.
LAV2_DEV float add_bias(float acc, int o, const __half* bias) {
    if (bias) acc += __half2float(bias[o]);
    return acc;
}

// Stores a warp's MT x NT tile of m16n8k16 accumulators (tc_stage_mma's layout) of the block tile
// at (bm, bn) into Y [M, N] with the bias added: two adjacent columns at once where N and Y allow.
template <int MT, int NT, int TM, int TN, typename T>
LAV2_DEV void tc_store_tile(const float (&acc)[MT][NT][4], T* Y, const __half* bias, int M, int N, int bm,
                            int bn, int wm, int wn, int lane) {
    const bool pair_ok = (N & 1) == 0 && (reinterpret_cast<u64>(Y) % Out<T>::align2) == 0;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const int col = bn + wn * TN + nt * 8 + (lane & 3) * 2;
            if (col >= N) continue;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = bm + wm * TM + mt * 16 + (lane >> 2) + h * 8;
                if (row >= M) continue;
                const long long idx = (long long)row * N + col;
                const float v0 = add_bias(acc[mt][nt][2 * h], col, bias);
                if (pair_ok) {  // N even and col even, so col + 1 < N as well
                    Out<T>::store2(Y + idx, v0, add_bias(acc[mt][nt][2 * h + 1], col + 1, bias));
                } else {
                    Out<T>::store(Y + idx, v0);
                    if (col + 1 < N) Out<T>::store(Y + idx + 1, add_bias(acc[mt][nt][2 * h + 1], col + 1, bias));
                }
            }
        }
    }
}

// Grid-stride unary map out = f(x) over n f16 values, 8-element vector path when aligned (any grid).
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

}  // namespace lav2
