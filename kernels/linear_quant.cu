// linear_quant.cu — weight-only quantized linear layers with linear.cu's fused bias
//   y[r, o] = Σ_k x[r, k] * w[o, k] + bias[o]
// where w is dequantized from the formats of src/quant.rs:
//   int8: values int8 [N, K], scales f16 [N] (one per output channel):        w = q · s
//   int4: values u8 [N, ceil(K/2)], element 2j in the low nibble of byte j, 2j+1 in the high one;
//         scales f16 [N, G], G = ceil(K / 128); zeros u8 [N, G] or nullptr (= 8): w = (q − zero) · s
// x: [rows, K] f16; bias: [N] f16 (nullable); y: [rows, N], f16 for *_f16 and f32 for *_f16f32 (the
// LM head). y must not alias x. f32 accumulation throughout. Every entry point takes the same
// arguments (int8 ignores `zeros`):
//   (x, w, scales, zeros, bias, y, rows, in_features, out_features)
//
//   linear_quant_gemv_*  decode (rows ≤ ~8): one warp per output feature, weights read exactly once with
//                   16-byte streaming loads, dequantized in registers (int → f16 by the 0x6400
//                   exponent trick, exact), f32 FMAs; int4 applies each group's scale once per
//                   32-element chunk. Any K: K % 16 (int8) / % 32 (int4) or an unaligned pointer
//                   switches to a scalar path with the same math.
//   linear_quant_gemm*  prefill: linear.cu's tensor-core GEMM (mma.sync m16n8k16, swizzled shared tiles,
//                   cp.async for x) whose weight tiles are dequantized on the way into shared memory:
//                   the raw bytes of stage k+2 are fetched into registers before the MMAs of stage k
//                   and dequantized to f16 after them. gemm = 128x128x32 tiles (256 threads),
//                   gemm64 = 64x64x32 (128 threads). The f16 rounding of each dequantized weight is
//                   the only difference from the f16 path.
#include "common.cuh"

using namespace lav2;

namespace {

constexpr int QGROUP = 128;  // int4 group size (src/quant.rs INT4_GROUP)



// ---------------------------------------------------------------------------------------------
// Dequantization helpers. A 32-bit word with the f16 exponent pattern of 1024 (0x6400) in the high
// bits of each half and a small integer m < 1024 in the mantissa is exactly the half2 (1024 + m);
// subtracting (1024 + zero) in f16 is exact as well, which leaves q − zero as exact halves.
// ---------------------------------------------------------------------------------------------

LAV2_DEV u32 prmt(u32 a, u32 b, u32 sel) {
    u32 d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
    return d;
}

LAV2_DEV u32 hsub2(u32 a, u32 b) {
    u32 d;
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

LAV2_DEV float2 h2_to_f2(u32 v) { return __half22float2(*reinterpret_cast<const __half2*>(&v)); }

// Four int8 values (byte j = element j) -> exact floats.
LAV2_DEV void int8x4_to_float(u32 w, float* f) {
    const u32 u = w ^ 0x80808080u;                                   // q + 128, as unsigned bytes
    const u32 lo = hsub2(prmt(u, 0x64646464u, 0x4140u), 0x64806480u);  // (b0, b1) - 1152 -> (q0, q1)
    const u32 hi = hsub2(prmt(u, 0x64646464u, 0x4342u), 0x64806480u);  // (b2, b3) - 1152 -> (q2, q3)
    const float2 a = h2_to_f2(lo), b = h2_to_f2(hi);
    f[0] = a.x;
    f[1] = a.y;
    f[2] = b.x;
    f[3] = b.y;
}

// Eight int4 values (nibble j = element j, low nibble first) minus the zero point -> exact floats.
// zz is the half2 pair (1024 + zero, 1024 + zero).
LAV2_DEV void int4x8_to_float(u32 w, u32 zz, float* f) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        // nibbles j and j + 4 land in the low bits of the two halves
        const u32 t = hsub2(((w >> (4 * j)) & 0x000F000Fu) | 0x64006400u, zz);
        const float2 p = h2_to_f2(t);
        f[j] = p.x;
        f[j + 4] = p.y;
    }
}

LAV2_DEV u32 zero_pair(int zero) { return (0x6400u | (u32)zero) * 0x00010001u; }

// Scalar dequantization of w[n, k] (without the int8 scale when `with_scale` is false).
template <bool INT4>
LAV2_DEV float dequant_scalar(const unsigned char* w, const __half* scales, const unsigned char* zeros, int n,
                              int k, int K) {
    if (INT4) {
        const long long row = (long long)n * ((K + 1) >> 1);
        const unsigned char byte = w[row + (k >> 1)];
        const int q = (k & 1) ? (byte >> 4) : (byte & 15);
        const int G = ceil_div(K, QGROUP);
        const long long g = (long long)n * G + k / QGROUP;
        const int z = zeros ? (int)zeros[g] : 8;
        return (float)(q - z) * __half2float(scales[g]);
    } else {
        return (float)(signed char)w[(long long)n * K + k] * __half2float(scales[n]);
    }
}

// ---------------------------------------------------------------------------------------------
// GEMV: block = 8 warps, warp w of block b computes output feature o = 8b + w for up to QV_ROWS rows
// (grid.y walks further row groups). Lane c handles 16-byte weight chunks c, c + 32, ...
// ---------------------------------------------------------------------------------------------
constexpr int QV_WARPS = 8;
constexpr int QV_ROWS = 4;
constexpr int QV_UNROLL = 2;

template <bool INT4>
struct QChunk;

// int8: 16 elements per chunk, the per-row scale is applied once at the end.
template <>
struct QChunk<false> {
    static constexpr int EPC = 16;
    static LAV2_DEV void run(const uint4& wv, int c, const uint4* x4, int xstride, int nr, const __half*,
                             const unsigned char*, int, int, float (&acc)[QV_ROWS]) {
        float wf[16];
        int8x4_to_float(wv.x, wf);
        int8x4_to_float(wv.y, wf + 4);
        int8x4_to_float(wv.z, wf + 8);
        int8x4_to_float(wv.w, wf + 12);
#pragma unroll
        for (int r = 0; r < QV_ROWS; ++r) {
            if (r < nr) {
                float xa[8], xb[8];
                unpack8(__ldg(x4 + (long long)r * xstride + 2 * c), xa);
                unpack8(__ldg(x4 + (long long)r * xstride + 2 * c + 1), xb);
                float s = 0.0f;
#pragma unroll
                for (int j = 0; j < 8; ++j) s = fmaf(xa[j], wf[j], s);
#pragma unroll
                for (int j = 0; j < 8; ++j) s = fmaf(xb[j], wf[8 + j], s);
                acc[r] += s;
            }
        }
    }
};

// int4: 32 elements per chunk, all inside one group of 128 (chunks never straddle a group). One
// 32-bit word (8 elements) is dequantized at a time to keep few values live.
template <>
struct QChunk<true> {
    static constexpr int EPC = 32;
    static LAV2_DEV void run(const uint4& wv, int c, const uint4* x4, int xstride, int nr, const __half* scales,
                             const unsigned char* zeros, int o, int G, float (&acc)[QV_ROWS]) {
        const long long g = (long long)o * G + (c >> 2);
        const float sc = __half2float(scales[g]);
        const u32 zz = zero_pair(zeros ? (int)zeros[g] : 8);
        const u32 words[4] = {wv.x, wv.y, wv.z, wv.w};
        float part[QV_ROWS];
#pragma unroll
        for (int r = 0; r < QV_ROWS; ++r) part[r] = 0.0f;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            float wf[8];
            int4x8_to_float(words[q], zz, wf);
#pragma unroll
            for (int r = 0; r < QV_ROWS; ++r) {
                if (r < nr) {
                    float xf[8];
                    unpack8(__ldg(x4 + (long long)r * xstride + 4 * c + q), xf);
#pragma unroll
                    for (int j = 0; j < 8; ++j) part[r] = fmaf(xf[j], wf[j], part[r]);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < QV_ROWS; ++r) acc[r] = fmaf(sc, part[r], acc[r]);
    }
};

template <bool INT4, typename T>
LAV2_DEV void qgemv(const __half* __restrict__ x, const unsigned char* __restrict__ w, const __half* __restrict__ scales,
                    const unsigned char* __restrict__ zeros, const __half* bias, T* y, int rows, int K,
                    int N) {
    const int lane = threadIdx.x & 31;
    const int o = blockIdx.x * QV_WARPS + (threadIdx.x >> 5);
    const int r0 = blockIdx.y * QV_ROWS;
    if (o >= N || r0 >= rows) return;
    const int nr = min(QV_ROWS, rows - r0);
    const int G = INT4 ? ceil_div(K, QGROUP) : 1;
    const long long row_bytes = INT4 ? (long long)((K + 1) >> 1) : (long long)K;
    const unsigned char* wr = w + (long long)o * row_bytes;
    const __half* xr = x + (long long)r0 * K;

    float acc[QV_ROWS];
#pragma unroll
    for (int r = 0; r < QV_ROWS; ++r) acc[r] = 0.0f;

    constexpr int EPC = QChunk<INT4>::EPC;
    const bool vec = (K % EPC) == 0 && aligned16(x) && aligned16(w);
    if (vec) {
        const int nck = K / EPC;
        const int xstride = K >> 3;  // uint4 (8 halves) per x row
        const uint4* w4 = reinterpret_cast<const uint4*>(wr);
        const uint4* x4 = reinterpret_cast<const uint4*>(xr);
        int c = lane;
        for (; c + 32 * (QV_UNROLL - 1) < nck; c += 32 * QV_UNROLL) {
            uint4 wv[QV_UNROLL];
#pragma unroll
            for (int u = 0; u < QV_UNROLL; ++u) wv[u] = ld_stream16(w4 + c + 32 * u);
#pragma unroll
            for (int u = 0; u < QV_UNROLL; ++u) QChunk<INT4>::run(wv[u], c + 32 * u, x4, xstride, nr, scales, zeros, o, G, acc);
        }
        for (; c < nck; c += 32) QChunk<INT4>::run(ld_stream16(w4 + c), c, x4, xstride, nr, scales, zeros, o, G, acc);
    } else {
        for (int k = lane; k < K; k += 32) {
            float wf;
            if (INT4) {
                wf = dequant_scalar<true>(w, scales, zeros, o, k, K);
            } else {
                wf = (float)(signed char)wr[k];  // the scale is applied after the sum, as on the fast path
            }
#pragma unroll
            for (int r = 0; r < QV_ROWS; ++r)
                if (r < nr) acc[r] = fmaf(__half2float(xr[(long long)r * K + k]), wf, acc[r]);
        }
    }

    const float s8 = INT4 ? 1.0f : __half2float(scales[o]);
#pragma unroll
    for (int r = 0; r < QV_ROWS; ++r) acc[r] = warp_sum(acc[r]) * s8;
#pragma unroll
    for (int r = 0; r < QV_ROWS; ++r) {
        if (lane == r && r < nr) {
            const long long idx = (long long)(r0 + r) * N + o;
            Out<T>::store(y + idx, add_bias(acc[r], o, bias));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor-core GEMM with dequantized weight tiles. The tile layout, swizzle, fragment loads, MMAs and
// store (common.cuh's tc_stage_mma, tc_store_tile) are linear.cu's gemm_tc; only the B (weight)
// tile loader differs.
// ---------------------------------------------------------------------------------------------
constexpr int BK = TC_BK;

// Raw bytes of one 8-element weight chunk (w[n, k .. k+8)), with its scale and zero point.
struct BRaw {
    uint2 q;  // int8: 8 bytes; int4: q.x holds 8 nibbles
    float s;
    int z;
    bool valid;
};

template <int BM, int BN, int WM, int WN, int STAGES, bool INT4, typename T>
LAV2_DEV void qgemm_tc(const __half* __restrict__ A, const unsigned char* __restrict__ Wq,
                       const __half* __restrict__ scales, const unsigned char* __restrict__ zeros, const __half* bias,
                       T* Y, int M, int K, int N) {
    constexpr int THREADS = WM * WN * 32;
    constexpr int TM = BM / WM, TN = BN / WN;  // warp tile
    constexpr int MT = TM / 16, NT = TN / 8;   // mma tiles per warp
    static_assert(NT % 2 == 0, "B fragments are loaded two n-tiles at a time");
    constexpr int A_CHUNKS = BM * (BK / 8);
    constexpr int B_CHUNKS = BN * (BK / 8);
    static_assert(A_CHUNKS % THREADS == 0 && B_CHUNKS % THREADS == 0, "every thread loads the same number of chunks");
    constexpr int B_PER = B_CHUNKS / THREADS;
    constexpr int STAGE_ELEMS = (BM + BN) * BK;

    __shared__ __align__(128) __half smem[STAGES * STAGE_ELEMS];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WN, wn = warp % WN;
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
    const int KT = ceil_div(K, BK);
    const bool fastA = (K & 7) == 0 && aligned16(A);
    // K % 8 == 0 makes every chunk either fully inside or fully past K, and keeps int8 rows 8-byte
    // and packed int4 rows 4-byte aligned (given an aligned base).
    const bool fastB = (K & 7) == 0 && (INT4 ? aligned4(Wq) : aligned8(Wq));
    const int G = INT4 ? ceil_div(K, QGROUP) : 1;
    const long long row_bytes = INT4 ? (long long)((K + 1) >> 1) : (long long)K;

    auto load_a = [&](int stage, int kt) {
        __half* s = smem + stage * STAGE_ELEMS;
        const int k0 = kt * BK;
#pragma unroll
        for (int j = 0; j < A_CHUNKS / THREADS; ++j) {
            const int i = tid + j * THREADS;
            const int row = i >> 2, ck = i & 3;
            const int k = k0 + ck * 8;
            const int m = bm + row;
            const bool valid = m < M;
            const __half* src = A + (long long)(valid ? m : 0) * K;
            __half* dst = s + tc_swz(row, ck);
            if (fastA) {
                const bool in = valid && k < K;
                cp_async16(dst, in ? src + k : A, in ? 16 : 0);
            } else {
                __align__(16) __half v[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) v[e] = (valid && k + e < K) ? src[k + e] : __float2half_rn(0.0f);
                *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(v);
            }
        }
    };

    BRaw raw[B_PER];
    auto load_b_raw = [&](int kt) {
        if (!fastB) return;  // the slow path reads global memory in store_b
        const int k0 = kt * BK;
#pragma unroll
        for (int j = 0; j < B_PER; ++j) {
            const int i = tid + j * THREADS;
            const int row = i >> 2, ck = i & 3;
            const int n = bn + row;
            const int k = k0 + ck * 8;
            raw[j].valid = n < N && k < K;
            raw[j].q = make_uint2(0u, 0u);
            raw[j].s = 0.0f;
            raw[j].z = 0;
            if (raw[j].valid) {
                const unsigned char* wrow = Wq + (long long)n * row_bytes;
                if (INT4) {
                    raw[j].q.x = __ldg(reinterpret_cast<const unsigned int*>(wrow + (k >> 1)));
                    const long long g = (long long)n * G + k / QGROUP;
                    raw[j].s = __half2float(scales[g]);
                    raw[j].z = zeros ? (int)zeros[g] : 8;
                } else {
                    raw[j].q = __ldg(reinterpret_cast<const uint2*>(wrow + k));
                    raw[j].s = __half2float(scales[n]);
                }
            }
        }
    };
    auto store_b = [&](int stage, int kt) {
        __half* s = smem + stage * STAGE_ELEMS + BM * BK;
        const int k0 = kt * BK;
#pragma unroll
        for (int j = 0; j < B_PER; ++j) {
            const int i = tid + j * THREADS;
            const int row = i >> 2, ck = i & 3;
            float f[8];
            if (fastB) {
                if (raw[j].valid) {
                    if (INT4) {
                        int4x8_to_float(raw[j].q.x, zero_pair(raw[j].z), f);
                    } else {
                        int8x4_to_float(raw[j].q.x, f);
                        int8x4_to_float(raw[j].q.y, f + 4);
                    }
#pragma unroll
                    for (int e = 0; e < 8; ++e) f[e] *= raw[j].s;
                } else {
#pragma unroll
                    for (int e = 0; e < 8; ++e) f[e] = 0.0f;
                }
            } else {
                const int n = bn + row;
                const int k = k0 + ck * 8;
#pragma unroll
                for (int e = 0; e < 8; ++e)
                    f[e] = (n < N && k + e < K) ? dequant_scalar<INT4>(Wq, scales, zeros, n, k + e, K) : 0.0f;
            }
            *reinterpret_cast<uint4*>(s + tc_swz(row, ck)) = pack8(f);
        }
    };

    float acc[MT][NT][4];
#pragma unroll
    for (int a = 0; a < MT; ++a)
#pragma unroll
        for (int b = 0; b < NT; ++b)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[a][b][c] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < KT) {
            load_a(s, s);
            load_b_raw(s);
            store_b(s, s);
        }
        cp_async_commit();
    }

    for (int kt = 0; kt < KT; ++kt) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        // Stage (kt + STAGES - 1) % STAGES == (kt - 1) % STAGES was last read in iteration kt - 1,
        // which every warp has finished (barrier above); it is consumed after the barrier of a later
        // iteration, so both the cp.async of A and the plain stores of B below are safe.
        const int nk = kt + STAGES - 1;
        const bool prefetch = nk < KT;
        if (prefetch) {
            load_a(nk % STAGES, nk);
            load_b_raw(nk);
        }
        cp_async_commit();
        const __half* sA = smem + (kt % STAGES) * STAGE_ELEMS;
        const __half* sB = sA + BM * BK;
        tc_stage_mma<MT, NT, TM, TN>(acc, sA, sB, wm, wn, lane);
        if (prefetch) store_b(nk % STAGES, nk);
    }
    cp_async_wait<0>();

    tc_store_tile<MT, NT, TM, TN>(acc, Y, bias, M, N, bm, bn, wm, wn, lane);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points. GEMV: grid (ceil(N/8), ceil(rows/4)), block 256. GEMM: grid (ceil(N/128),
// ceil(M/128)), block 256; GEMM64: grid (ceil(N/64), ceil(M/64)), block 128. No dynamic smem.
// ---------------------------------------------------------------------------------------------

#define LAV2_QUANT_ARGS(T)                                                                                   \
    const __half *x, const unsigned char *w, const __half *scales, const unsigned char *zeros, const __half *bias, \
        T *y, int rows, int in_features, int out_features
#define LAV2_QUANT_PASS x, w, scales, zeros, bias, y, rows, in_features, out_features

extern "C" __global__ void __launch_bounds__(QV_WARPS * 32) linear_quant_gemv_int8_f16(LAV2_QUANT_ARGS(__half)) {
    qgemv<false, __half>(LAV2_QUANT_PASS);
}
extern "C" __global__ void __launch_bounds__(QV_WARPS * 32) linear_quant_gemv_int8_f16f32(LAV2_QUANT_ARGS(float)) {
    qgemv<false, float>(LAV2_QUANT_PASS);
}
extern "C" __global__ void __launch_bounds__(QV_WARPS * 32) linear_quant_gemv_int4_f16(LAV2_QUANT_ARGS(__half)) {
    qgemv<true, __half>(LAV2_QUANT_PASS);
}
extern "C" __global__ void __launch_bounds__(QV_WARPS * 32) linear_quant_gemv_int4_f16f32(LAV2_QUANT_ARGS(float)) {
    qgemv<true, float>(LAV2_QUANT_PASS);
}

extern "C" __global__ void __launch_bounds__(GEMM128_THREADS) linear_quant_gemm128_int8_f16(LAV2_QUANT_ARGS(__half)) {
    qgemm_tc<GEMM128_TILE, GEMM128_TILE, 2, 4, 3, false, __half>(LAV2_QUANT_PASS);
}
extern "C" __global__ void __launch_bounds__(GEMM128_THREADS) linear_quant_gemm128_int8_f16f32(LAV2_QUANT_ARGS(float)) {
    qgemm_tc<GEMM128_TILE, GEMM128_TILE, 2, 4, 3, false, float>(LAV2_QUANT_PASS);
}
extern "C" __global__ void __launch_bounds__(GEMM128_THREADS) linear_quant_gemm128_int4_f16(LAV2_QUANT_ARGS(__half)) {
    qgemm_tc<GEMM128_TILE, GEMM128_TILE, 2, 4, 3, true, __half>(LAV2_QUANT_PASS);
}
extern "C" __global__ void __launch_bounds__(GEMM128_THREADS) linear_quant_gemm128_int4_f16f32(LAV2_QUANT_ARGS(float)) {
    qgemm_tc<GEMM128_TILE, GEMM128_TILE, 2, 4, 3, true, float>(LAV2_QUANT_PASS);
}
extern "C" __global__ void __launch_bounds__(GEMM64_THREADS) linear_quant_gemm64_int8_f16(LAV2_QUANT_ARGS(__half)) {
    qgemm_tc<GEMM64_TILE, GEMM64_TILE, 2, 2, 4, false, __half>(LAV2_QUANT_PASS);
}
extern "C" __global__ void __launch_bounds__(GEMM64_THREADS) linear_quant_gemm64_int8_f16f32(LAV2_QUANT_ARGS(float)) {
    qgemm_tc<GEMM64_TILE, GEMM64_TILE, 2, 2, 4, false, float>(LAV2_QUANT_PASS);
}
extern "C" __global__ void __launch_bounds__(GEMM64_THREADS) linear_quant_gemm64_int4_f16(LAV2_QUANT_ARGS(__half)) {
    qgemm_tc<GEMM64_TILE, GEMM64_TILE, 2, 2, 4, true, __half>(LAV2_QUANT_PASS);
}
extern "C" __global__ void __launch_bounds__(GEMM64_THREADS) linear_quant_gemm64_int4_f16f32(LAV2_QUANT_ARGS(float)) {
    qgemm_tc<GEMM64_TILE, GEMM64_TILE, 2, 2, 4, true, float>(LAV2_QUANT_PASS);
}
