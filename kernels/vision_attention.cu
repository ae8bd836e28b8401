// vision_attention.cu — full (bidirectional) multi-head attention over n tokens from a packed
// qkv [n, 3*width] (q | k | v, head h at columns h*hd of each part) into out [n, width],
// width = n_heads * hd. SIMT with online softmax: n is at most a few hundred (257 for ViT-L/14)
// and this runs once per image, so tensor cores would buy little.
#include "common.cuh"

using namespace lav2;

namespace {
constexpr int VA_WARPS = 4;
constexpr int VA_QPW = 8;                     // queries per warp
constexpr int VA_BQ = VA_WARPS * VA_QPW;      // queries per block
constexpr int VA_TK = 32;                     // keys per tile: one per lane for the scores
constexpr int VA_MAX_HD = 128;
constexpr int VA_KLD = VA_MAX_HD + 2;         // odd word pitch: lane-per-row reads are conflict-free
}  // namespace

// grid (ceil(n / 32), n_heads), block 128, no dynamic smem (~37 KB static). head_dim even, <= 128.
extern "C" __global__ void __launch_bounds__(VA_WARPS * 32)
    vision_attention_f16(const __half* qkv, __half* out, int n, int n_heads, int head_dim, float scale) {
    __shared__ float qs[VA_BQ][VA_MAX_HD];
    __shared__ __align__(16) __half ks[VA_TK][VA_KLD];
    __shared__ __align__(16) __half vs[VA_TK][VA_MAX_HD];
    __shared__ float ps[VA_WARPS][VA_QPW][VA_TK];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int h = blockIdx.y, q0 = blockIdx.x * VA_BQ;
    const int hd = head_dim, np = hd >> 1;
    const int width = n_heads * hd;
    const long long row_stride = 3LL * width;
    const float scale_log2 = scale * LAV2_LOG2E;

    for (int i = tid; i < VA_BQ * np; i += blockDim.x) {
        const int r = i / np, dp = i % np;
        float2 f = make_float2(0.0f, 0.0f);
        if (q0 + r < n)
            f = __half22float2(*reinterpret_cast<const __half2*>(qkv + (q0 + r) * row_stride + h * hd + 2 * dp));
        qs[r][2 * dp] = f.x * scale_log2;
        qs[r][2 * dp + 1] = f.y * scale_log2;
    }

    const int wq = warp * VA_QPW;  // first query row of this warp within the block
    const bool active = q0 + wq < n;
    float m[VA_QPW], l[VA_QPW], acc[VA_QPW][4];
#pragma unroll
    for (int i = 0; i < VA_QPW; ++i) {
        m[i] = LAV2_NEG_BIG;
        l[i] = 0.0f;
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
    }

    for (int k0 = 0; k0 < n; k0 += VA_TK) {
        __syncthreads();  // previous tile fully consumed (and qs written, on the first pass)
        for (int i = tid; i < VA_TK * np; i += blockDim.x) {
            const int r = i / np, dp = i % np;
            __half2 kv = __floats2half2_rn(0.0f, 0.0f), vv = kv;
            if (k0 + r < n) {
                const __half* base = qkv + (k0 + r) * row_stride + h * hd + 2 * dp;
                kv = *reinterpret_cast<const __half2*>(base + width);
                vv = *reinterpret_cast<const __half2*>(base + 2 * width);
            }
            *reinterpret_cast<__half2*>(&ks[r][2 * dp]) = kv;
            *reinterpret_cast<__half2*>(&vs[r][2 * dp]) = vv;
        }
        __syncthreads();
        if (!active) continue;

        float s[VA_QPW];
#pragma unroll
        for (int i = 0; i < VA_QPW; ++i) s[i] = 0.0f;
        for (int dp = 0; dp < np; ++dp) {
            const float2 kf = __half22float2(*reinterpret_cast<const __half2*>(&ks[lane][2 * dp]));
#pragma unroll
            for (int i = 0; i < VA_QPW; ++i) {
                const float2 qf = *reinterpret_cast<const float2*>(&qs[wq + i][2 * dp]);
                s[i] = fmaf(qf.x, kf.x, fmaf(qf.y, kf.y, s[i]));
            }
        }
        const bool key_ok = k0 + lane < n;
#pragma unroll
        for (int i = 0; i < VA_QPW; ++i) {
            const float sv = key_ok ? s[i] : LAV2_NEG_INF;
            const float m_new = fmaxf(m[i], warp_max(sv));
            const float alpha = exp2f(m[i] - m_new);
            const float p = exp2f(sv - m_new);
            l[i] = l[i] * alpha + p;  // per-lane partial, summed over the warp at the end
            m[i] = m_new;
            acc[i][0] *= alpha;
            acc[i][1] *= alpha;
            acc[i][2] *= alpha;
            acc[i][3] *= alpha;
            ps[warp][i][lane] = p;
        }
        __syncwarp();
        const int nk = min(VA_TK, n - k0);
        for (int j = 0; j < nk; ++j) {
            float2 v0 = make_float2(0.0f, 0.0f), v1 = v0;
            if (lane < np) v0 = __half22float2(*reinterpret_cast<const __half2*>(&vs[j][2 * lane]));
            if (lane + 32 < np) v1 = __half22float2(*reinterpret_cast<const __half2*>(&vs[j][2 * lane + 64]));
#pragma unroll
            for (int i = 0; i < VA_QPW; ++i) {
                const float p = ps[warp][i][j];
                acc[i][0] = fmaf(p, v0.x, acc[i][0]);
                acc[i][1] = fmaf(p, v0.y, acc[i][1]);
                acc[i][2] = fmaf(p, v1.x, acc[i][2]);
                acc[i][3] = fmaf(p, v1.y, acc[i][3]);
            }
        }
        __syncwarp();  // ps is rewritten by the next tile
    }

    if (!active) return;
#pragma unroll
    for (int i = 0; i < VA_QPW; ++i) {
        const int t = q0 + wq + i;
        const float inv = 1.0f / warp_sum(l[i]);
        if (t >= n) continue;
        __half* o = out + (long long)t * width + h * hd;
        if (lane < np) *reinterpret_cast<__half2*>(o + 2 * lane) = __floats2half2_rn(acc[i][0] * inv, acc[i][1] * inv);
        if (lane + 32 < np)
            *reinterpret_cast<__half2*>(o + 2 * lane + 64) = __floats2half2_rn(acc[i][2] * inv, acc[i][3] * inv);
    }
}
