// sample_token.cu — next-token selection from f32 logits [vocab], one block, result to a device int so
// the decode loop (and a captured CUDA graph) never waits on the host.
//   sample_token_f32: temperature 0 -> the index of the largest logit, ties -> lowest index (NaN never
//   wins); otherwise the LLaMA-Adapter rule —
//     probs = softmax(logits / temperature), sorted descending (ties: lower index first);
//     drop every token whose cumulative sum *before* it exceeds top_p (cumsum - p > top_p);
//     renormalize; pick the first token in that order whose running cumsum exceeds u * kept_total,
//     u = *uniform in [0, 1). temperature <= 0 falls back to argmax.
//   No sort: the cut-off token and the sampled token are each found by a 3-level radix select
//   (11 + 11 + 9 bits) over the f32 bit pattern of w = exp(z - z_max), z = logit / temperature, with
//   masses summed as 40-bit fixed point in 64-bit integers. Integer sums are exact and order-free, so
//   the result is deterministic and matches a sequential sort-and-cumsum up to the 2^-40 quantization
//   of each probability (tokens with w < 2^-40 ≈ 9e-13 carry zero mass and are never sampled).
//   About 7 passes over the logits; no scratch memory is needed (all state is in shared memory).
#include "common.cuh"

using namespace lav2;

namespace {

constexpr int SP_THREADS = 1024;
constexpr int SP_BINS = 2048;
constexpr float SP_FIX = 1099511627776.0f;  // 2^40: vocab up to 2^24 cannot overflow 64 bits

// Visits every logit once as (index, value), 16-byte loads when possible.
template <typename F>
LAV2_DEV void for_each_logit(const float* logits, int vocab, F&& f) {
    if ((vocab & 3) == 0 && aligned16(logits)) {
        const float4* l4 = reinterpret_cast<const float4*>(logits);
        for (int i = threadIdx.x; i < (vocab >> 2); i += SP_THREADS) {
            const float4 v = l4[i];
            f(4 * i, v.x);
            f(4 * i + 1, v.y);
            f(4 * i + 2, v.z);
            f(4 * i + 3, v.w);
        }
    } else {
        for (int i = threadIdx.x; i < vocab; i += SP_THREADS) f(i, logits[i]);
    }
}

struct ArgMax {
    float v;
    int i;
};
LAV2_DEV void argmax_merge(ArgMax& a, float v, int i) {
    if (v > a.v || (v == a.v && i < a.i)) {
        a.v = v;
        a.i = i;
    }
}

// Block-wide argmax; every thread gets the result. Needs blockDim.x == SP_THREADS.
LAV2_DEV ArgMax block_argmax(const float* logits, int vocab) {
    __shared__ float sv[32];
    __shared__ int si[32];
    ArgMax a{LAV2_NEG_INF, LAV2_INT_MAX};
    for_each_logit(logits, vocab, [&](int i, float v) { argmax_merge(a, v, i); });
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) argmax_merge(a, __shfl_xor_sync(0xffffffffu, a.v, o), __shfl_xor_sync(0xffffffffu, a.i, o));
    if (lane == 0) {
        sv[warp] = a.v;
        si[warp] = a.i;
    }
    __syncthreads();
    a.v = sv[lane];
    a.i = si[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) argmax_merge(a, __shfl_xor_sync(0xffffffffu, a.v, o), __shfl_xor_sync(0xffffffffu, a.i, o));
    __syncthreads();
    if (a.i == LAV2_INT_MAX) a.i = 0;  // every logit NaN or -inf: any valid id
    return a;
}

// w = exp(logit / T - z_max) in [0, 1]; NaN -> 0.
LAV2_DEV float weight_of(float logit, float temperature, float zmax) {
    const float w = expf(logit / temperature - zmax);
    return w >= 0.0f ? w : 0.0f;
}
LAV2_DEV u64 fixed_of(float w) { return __float2ull_rz(w * SP_FIX); }

LAV2_DEV u64 warp_incl_scan(u64 v) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const u64 t = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += t;
    }
    return v;
}

struct SelectState {
    u64 warp_tot[32];
    int digit;
    u64 above;  // mass of all keys above the selected digit (including the incoming `above`)
};

// Digit d (0 <= d < nbins) with the largest value such that above + Σ_{d' >= d} hist[d'] > X, i.e. the
// digit bucket where the descending cumulative mass first exceeds X. Result in st.digit / st.above.
LAV2_DEV void select_digit(const u64* hist, int nbins, u64 above, u64 X, SelectState& st) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    // Positions run from the highest bin down: position p <-> bin nbins - 1 - p.
    const int p0 = 2 * tid, p1 = 2 * tid + 1;
    const u64 h0 = p0 < nbins ? hist[nbins - 1 - p0] : 0ull;
    const u64 h1 = p1 < nbins ? hist[nbins - 1 - p1] : 0ull;
    const u64 local = h0 + h1;
    const u64 incl = warp_incl_scan(local);
    if (lane == 31) st.warp_tot[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        const u64 t = warp_incl_scan(st.warp_tot[lane]);
        st.warp_tot[lane] = t;
    }
    __syncthreads();
    const u64 excl = (warp > 0 ? st.warp_tot[warp - 1] : 0ull) + incl - local;  // mass before p0
    const bool c0 = p0 < nbins && above + excl + h0 > X;
    const bool c1 = p1 < nbins && above + excl + h0 + h1 > X;
    int cnt = __syncthreads_count(c0) + __syncthreads_count(c1);
    if (cnt < 1) cnt = 1;  // unreachable with exact sums; keeps the result a valid bin
    const int pos = nbins - cnt;
    if (p0 == pos) {
        st.digit = nbins - 1 - p0;
        st.above = above + excl;
    }
    if (p1 == pos) {
        st.digit = nbins - 1 - p1;
        st.above = above + excl + h0;
    }
    __syncthreads();
}

struct Crossing {
    u32 key;    // f32 bits of w of the crossing token(s)
    u64 above;  // mass strictly above key
    u64 q;      // fixed-point mass of one token with this key
    u64 ntie;   // tokens sharing this key
};

// First token, in sorted order, whose inclusive cumulative mass exceeds X (X < total mass).
// hist1 is the level-1 histogram over all tokens; hist is scratch.
LAV2_DEV Crossing find_crossing(const float* logits, int vocab, float temperature, float zmax, const u64* hist1,
                                u64* hist, u64 X, SelectState& st) {
    select_digit(hist1, SP_BINS, 0ull, X, st);
    const u32 d1 = (u32)st.digit;
    u64 above = st.above;

    for (int i = threadIdx.x; i < SP_BINS; i += SP_THREADS) hist[i] = 0ull;
    __syncthreads();
    for_each_logit(logits, vocab, [&](int, float l) {
        const float w = weight_of(l, temperature, zmax);
        const u32 key = __float_as_uint(w);
        const u64 q = fixed_of(w);
        if (q != 0ull && (key >> 20) == d1) atomicAdd(&hist[(key >> 9) & 0x7ffu], q);
    });
    __syncthreads();
    select_digit(hist, SP_BINS, above, X, st);
    const u32 prefix = (d1 << 11) | (u32)st.digit;
    above = st.above;

    for (int i = threadIdx.x; i < SP_BINS; i += SP_THREADS) hist[i] = 0ull;
    __syncthreads();
    for_each_logit(logits, vocab, [&](int, float l) {
        const float w = weight_of(l, temperature, zmax);
        const u32 key = __float_as_uint(w);
        const u64 q = fixed_of(w);
        if (q != 0ull && (key >> 9) == prefix) atomicAdd(&hist[key & 0x1ffu], q);
    });
    __syncthreads();
    select_digit(hist, 512, above, X, st);
    Crossing c;
    c.key = (prefix << 9) | (u32)st.digit;
    c.above = st.above;
    c.q = fixed_of(__uint_as_float(c.key));
    const u64 bucket = hist[st.digit];
    c.ntie = c.q ? bucket / c.q : 1ull;
    if (c.ntie < 1) c.ntie = 1;
    __syncthreads();  // hist is reused by the caller
    return c;
}

}  // namespace

// grid (rows), block SP_THREADS (exactly), ~33 KB static shared memory, no scratch buffers: one block
// per row of logits [rows, vocab]. params: device pointer to {temperature, top_p}; uniform: one f32 in
// [0, 1) per row — both written by the host before each step / graph replay, so one captured decode
// graph serves every sampling setting.
extern "C" __global__ void __launch_bounds__(SP_THREADS)
    sample_token_f32(const float* logits, int vocab, const float* params, const float* uniform, int* out_token) {
    const float temperature = params[0], top_p = params[1];
    __shared__ u64 hist1[SP_BINS];
    __shared__ u64 hist[SP_BINS];
    __shared__ SelectState st;
    __shared__ u64 s_z;
    __shared__ int s_found;

    logits += (long long)blockIdx.x * vocab;
    uniform += blockIdx.x;
    out_token += blockIdx.x;

    const ArgMax a = block_argmax(logits, vocab);
    if (!(temperature > 0.0f) || a.v == LAV2_POS_INF || a.v == LAV2_NEG_INF) {
        if (threadIdx.x == 0) *out_token = (a.v == LAV2_POS_INF || a.v == LAV2_NEG_INF) ? -1 : a.i;
        return;
    }
    const float zmax = a.v / temperature;

    // Level-1 histogram over every token; shared by both searches. Z = total mass.
    for (int i = threadIdx.x; i < SP_BINS; i += SP_THREADS) hist1[i] = 0ull;
    if (threadIdx.x == 0) s_z = 0ull;
    __syncthreads();
    u64 zpart = 0ull;
    for_each_logit(logits, vocab, [&](int, float l) {
        const float w = weight_of(l, temperature, zmax);
        const u64 q = fixed_of(w);
        if (q != 0ull) {
            atomicAdd(&hist1[__float_as_uint(w) >> 20], q);
            zpart += q;
        }
    });
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) zpart += __shfl_xor_sync(0xffffffffu, zpart, o);
    if ((threadIdx.x & 31) == 0) atomicAdd(&s_z, zpart);
    __syncthreads();
    const u64 Z = s_z;  // >= 2^40: the max token has w = 1

    // 1. Kept set: tokens whose preceding mass S_before <= top_p * Z, a prefix of the sorted order
    //    ending at the first token whose inclusive mass exceeds X = floor(top_p * Z).
    u64 kept = Z;
    const double xp = (double)top_p * (double)Z;
    if (xp < (double)Z) {
        const u64 X = xp > 0.0 ? (u64)xp : 0ull;
        const Crossing c = find_crossing(logits, vocab, temperature, zmax, hist1, hist, X, st);
        // Tokens tied at the cut-off key are kept while G + k*q <= X (k = 0, 1, ...).
        u64 ties = (X - c.above) / c.q + 1ull;
        if (ties > c.ntie) ties = c.ntie;
        kept = c.above + ties * c.q;
    }

    // 2. Sample: the first token whose inclusive mass exceeds X2 = floor(u * kept) (< kept).
    float u = *uniform;
    u = u >= 0.0f ? (u < 1.0f ? u : 0.99999994f) : 0.0f;
    u64 X2 = (u64)((double)u * (double)kept);
    if (X2 >= kept) X2 = kept - 1ull;
    const Crossing s = find_crossing(logits, vocab, temperature, zmax, hist1, hist, X2, st);
    const u64 rank = min((X2 - s.above) / s.q, s.ntie - 1ull);  // which of the tied tokens, by index

    // 3. Index of the rank-th token (in index order) whose key equals s.key.
    if (threadIdx.x == 0) s_found = -1;
    __syncthreads();
    if (s.ntie == 1ull) {
        for_each_logit(logits, vocab, [&](int i, float l) {
            if (__float_as_uint(weight_of(l, temperature, zmax)) == s.key) s_found = i;
        });
        __syncthreads();
    } else {
        __shared__ int wcount[32];
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        u64 remaining = rank;
        for (int base = 0; base < vocab; base += SP_THREADS) {
            const int i = base + threadIdx.x;
            const bool match = i < vocab && __float_as_uint(weight_of(logits[i], temperature, zmax)) == s.key;
            const u32 ballot = __ballot_sync(0xffffffffu, match);
            if (lane == 0) wcount[warp] = __popc(ballot);
            __syncthreads();
            int before = 0, total = 0;
#pragma unroll 4
            for (int w = 0; w < 32; ++w) {
                const int c = wcount[w];
                before += w < warp ? c : 0;
                total += c;
            }
            if (match && (u64)(before + __popc(ballot & ((1u << lane) - 1u))) == remaining) s_found = i;
            __syncthreads();
            if ((u64)total > remaining) break;
            remaining -= (u64)total;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) *out_token = s_found >= 0 ? s_found : a.i;
}
