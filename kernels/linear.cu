// linear.cu — linear layers y = x · Wᵀ with the bias fused
//   y[r, o] = Σ_k x[r, k] * w[o, k] + bias[o]
// x: [rows, K] f16, w: [N, K] f16 (row-major, PyTorch's [out_features, in_features]),
// bias: [N] f16 or nullptr, y: [rows, N]. f32 accumulation. The *_f16 kernels write f16; the
// *_f16f32 kernels write f32, for the LM head. y must not alias x or w.
//   gemv   — decode (rows ≤ ~8): one warp per output feature, weights streamed with 16-byte loads.
//   gemm   — prefill: tensor cores (mma.sync m16n8k16), 128x128x32 block tiles, 3-stage cp.async
//            pipeline; gemm64 is the same with 64x64 tiles, for grids too small to fill the GPU.
// Any M/N/K works: edges are zero-filled; when K % 8 != 0 or a pointer is not 16-byte aligned the tile
// loads fall back to scalar loads (same tensor-core math).
#include "common.cuh"

using namespace lav2;

namespace {



// ---------------------------------------------------------------------------------------------
// GEMV: block = 256 threads = 8 warps, warp w of block b computes feature o = 8b + w for up to
// GEMV_ROWS rows (grid.y walks further row groups). The weight row is read exactly once per row
// group, 16 bytes per lane and GEMV_UNROLL loads in flight, which is what decode is bound by.
// ---------------------------------------------------------------------------------------------
constexpr int GEMV_WARPS = 8;
constexpr int GEMV_ROWS = 4;
constexpr int GEMV_UNROLL = 4;

template <typename T>
LAV2_DEV void gemv(const __half* __restrict__ x, const __half* __restrict__ w, const __half* bias,
                   T* y, int rows, int K, int N) {
    const int lane = threadIdx.x & 31;
    const int o = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    const int r0 = blockIdx.y * GEMV_ROWS;
    if (o >= N || r0 >= rows) return;
    const int nr = min(GEMV_ROWS, rows - r0);
    const __half* xr = x + (long long)r0 * K;
    const __half* wr = w + (long long)o * K;

    float acc[GEMV_ROWS];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; ++r) acc[r] = 0.0f;

    const bool vec = (K & 7) == 0 && aligned16(x) && aligned16(w);
    if (vec) {
        const int nck = K >> 3;
        const uint4* w4 = reinterpret_cast<const uint4*>(wr);
        const uint4* x4 = reinterpret_cast<const uint4*>(xr);
        int c = lane;
        for (; c + 32 * (GEMV_UNROLL - 1) < nck; c += 32 * GEMV_UNROLL) {
            uint4 wv[GEMV_UNROLL];
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; ++u) wv[u] = ld_stream16(w4 + c + 32 * u);
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; ++u) {
                float wf[8];
                unpack8(wv[u], wf);
#pragma unroll
                for (int r = 0; r < GEMV_ROWS; ++r) {
                    if (r < nr) {
                        float xf[8];
                        unpack8(__ldg(x4 + (long long)r * nck + c + 32 * u), xf);
#pragma unroll
                        for (int j = 0; j < 8; ++j) acc[r] = fmaf(xf[j], wf[j], acc[r]);
                    }
                }
            }
        }
        for (; c < nck; c += 32) {
            float wf[8];
            unpack8(ld_stream16(w4 + c), wf);
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; ++r) {
                if (r < nr) {
                    float xf[8];
                    unpack8(__ldg(x4 + (long long)r * nck + c), xf);
#pragma unroll
                    for (int j = 0; j < 8; ++j) acc[r] = fmaf(xf[j], wf[j], acc[r]);
                }
            }
        }
    } else {
        for (int k = lane; k < K; k += 32) {
            const float wf = __half2float(wr[k]);
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; ++r)
                if (r < nr) acc[r] = fmaf(__half2float(xr[(long long)r * K + k]), wf, acc[r]);
        }
    }

#pragma unroll
    for (int r = 0; r < GEMV_ROWS; ++r) acc[r] = warp_sum(acc[r]);
    // Lane r finishes row r so the stores of one warp go out together.
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; ++r) {
        if (lane == r && r < nr) {
            const long long idx = (long long)(r0 + r) * N + o;
            Out<T>::store(y + idx, add_bias(acc[r], o, bias));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor-core GEMM: cp.async stages of swizzled [rows][TC_BK] tiles (common.cuh), which keeps
// 3 stages of 128x128 inside the 48 KB static limit.
// ---------------------------------------------------------------------------------------------
constexpr int BK = TC_BK;

template <int BM, int BN, int WM, int WN, int STAGES, typename T>
LAV2_DEV void gemm_tc(const __half* __restrict__ A, const __half* __restrict__ W, const __half* bias,
                      T* Y, int M, int K, int N) {
    constexpr int THREADS = WM * WN * 32;
    constexpr int TM = BM / WM, TN = BN / WN;  // warp tile
    constexpr int MT = TM / 16, NT = TN / 8;   // mma tiles per warp
    static_assert(NT % 2 == 0, "B fragments are loaded two n-tiles at a time");
    constexpr int CHUNKS = (BM + BN) * (BK / 8);
    static_assert(CHUNKS % THREADS == 0, "every thread loads the same number of chunks");
    constexpr int STAGE_ELEMS = (BM + BN) * BK;

    __shared__ __align__(128) __half smem[STAGES * STAGE_ELEMS];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WN, wn = warp % WN;
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
    const int KT = ceil_div(K, BK);
    const bool fast = (K & 7) == 0 && aligned16(A) && aligned16(W);

    auto load_tile = [&](int stage, int kt) {
        __half* s = smem + stage * STAGE_ELEMS;
        const int k0 = kt * BK;
#pragma unroll
        for (int j = 0; j < CHUNKS / THREADS; ++j) {
            const int i = tid + j * THREADS;
            const int row = i >> 2, ck = i & 3;
            const int k = k0 + ck * 8;
            const __half* src;
            bool valid;
            if (row < BM) {
                const int m = bm + row;
                valid = m < M;
                src = A + (long long)(valid ? m : 0) * K;
            } else {
                const int n = bn + row - BM;
                valid = n < N;
                src = W + (long long)(valid ? n : 0) * K;
            }
            __half* dst = s + tc_swz(row, ck);
            if (fast) {  // K % 8 == 0: a chunk is entirely inside or entirely past K
                const bool in = valid && k < K;
                cp_async16(dst, in ? src + k : A, in ? 16 : 0);
            } else {
                __align__(16) __half v[8];
#pragma unroll
                for (int e = 0; e < 8; ++e)
                    v[e] = (valid && k + e < K) ? src[k + e] : __float2half_rn(0.0f);
                *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(v);
            }
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
        if (s < KT) load_tile(s, s);
        cp_async_commit();
    }

    for (int kt = 0; kt < KT; ++kt) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        {
            const int nk = kt + STAGES - 1;
            if (nk < KT) load_tile(nk % STAGES, nk);
            cp_async_commit();
        }
        const __half* sA = smem + (kt % STAGES) * STAGE_ELEMS;
        const __half* sB = sA + BM * BK;
        tc_stage_mma<MT, NT, TM, TN>(acc, sA, sB, wm, wn, lane);
    }
    cp_async_wait<0>();

    tc_store_tile<MT, NT, TM, TN>(acc, Y, bias, M, N, bm, bn, wm, wn, lane);
}


}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    linear_gemv_f16(const __half* x, const __half* w, const __half* bias, __half* y, int rows, int in_features,
                    int out_features) {
    gemv<__half>(x, w, bias, y, rows, in_features, out_features);
}

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    linear_gemv_f16f32(const __half* x, const __half* w, const __half* bias, float* y, int rows, int in_features,
                       int out_features) {
    gemv<float>(x, w, bias, y, rows, in_features, out_features);
}

extern "C" __global__ void __launch_bounds__(GEMM128_THREADS)
    linear_gemm128_f16(const __half* x, const __half* w, const __half* bias, __half* y, int rows, int in_features,
                       int out_features) {
    gemm_tc<GEMM128_TILE, GEMM128_TILE, 2, 4, 3, __half>(x, w, bias, y, rows, in_features, out_features);
}

extern "C" __global__ void __launch_bounds__(GEMM128_THREADS)
    linear_gemm128_f16f32(const __half* x, const __half* w, const __half* bias, float* y, int rows, int in_features,
                          int out_features) {
    gemm_tc<GEMM128_TILE, GEMM128_TILE, 2, 4, 3, float>(x, w, bias, y, rows, in_features, out_features);
}

extern "C" __global__ void __launch_bounds__(GEMM64_THREADS)
    linear_gemm64_f16(const __half* x, const __half* w, const __half* bias, __half* y, int rows, int in_features,
                      int out_features) {
    gemm_tc<GEMM64_TILE, GEMM64_TILE, 2, 2, 4, __half>(x, w, bias, y, rows, in_features, out_features);
}

extern "C" __global__ void __launch_bounds__(GEMM64_THREADS)
    linear_gemm64_f16f32(const __half* x, const __half* w, const __half* bias, float* y, int rows, int in_features,
                         int out_features) {
    gemm_tc<GEMM64_TILE, GEMM64_TILE, 2, 2, 4, float>(x, w, bias, y, rows, in_features, out_features);
}
