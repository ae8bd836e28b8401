// adapter_attention.cu — LLaMA-Adapter V2 attention for one layer:
//   out[t,h] = softmax_causal(q[t,h]·K_cacheᵀ·scale) · V_cache
//            + gate[h] · softmax(q[t,h]·K_Pᵀ·scale) · V_P          (separate softmax, no mask)
// q, out: [T, n_heads, hd]; k_cache, v_cache: [max_seq, n_kv_heads, hd] (this layer);
// prompt_k, prompt_v: [prompt_len, n_kv_heads, hd]; gate: f32 [n_heads] (= tanh(gate)·new_gate).
// Query t sits at absolute position start_pos + t and sees cache rows 0 ..= start_pos + t (the rows of
// this step must already be written, see rope_kv_write_f16). Query head h reads kv head
// h / (n_heads / n_kv_heads). prompt_len == 0 or prompt_k == nullptr gives plain causal attention.
// Batched launches (grid z / y = sequence b, see each entry point): q and out hold b's rows at
// b·T·n_heads·hd, its cache block starts at b·cache_stride elements; the prompt K/V are shared.
// start_pos is read from device memory so a captured CUDA graph can be replayed every step.
// All softmax math is f32 in the base-2 domain (scores pre-multiplied by scale·log2 e).
//
//   adapter_attention_prefill_f16       tensor cores (mma.sync), 64 queries x 64 keys tiles,
//                                       online softmax, cp.async double buffering
//   adapter_attention_decode_split_f16  T == 1, split-K over the sequence (flash-decoding)
//   adapter_attention_decode_reduce_f16 merges the splits and adds the gated prompt term
//   adapter_attention_causal_prefill_f16 / adapter_attention_prompt_f16  the unfused variant, for comparisons
#include "common.cuh"

using namespace lav2;

namespace {

// ---------------------------------------------------------------------------------------------
// Prefill (tensor cores)
// ---------------------------------------------------------------------------------------------
constexpr int PF_WARPS = 4;
constexpr int PF_BQ = 16 * PF_WARPS;  // queries per block: 16 rows per warp (one mma M tile)
constexpr int PF_BKV = 64;            // keys per tile
constexpr int PF_DCHUNK = 128;        // output dims held in registers per pass
constexpr int PF_NT_D = PF_DCHUNK / 8;

struct PfSmem {
    __half* q;   // [PF_BQ][ld]
    __half* k;   // [2][PF_BKV][ld]
    __half* v;   // [2][PF_BKV][ld]
    int ld;      // hd_pad + 8 halves: 16-byte multiple, and ldmatrix rows land on distinct banks
};

// Copies rows [row0, row0 + PF_BKV) (or PF_BQ for q) of a [rows, stride] matrix, columns [0, hd), into
// a [nrows][ld] tile, zero-filling rows >= nvalid and columns in [hd, hd_pad).
LAV2_DEV void pf_load_rows(__half* dst, int ld, const __half* base, long long row_stride, int row0,
                           int nrows, int nvalid, int hd, int hd_pad, bool fast) {
    const int cpr = hd_pad >> 3;  // 16-byte chunks per row
    const int total = nrows * cpr;
    for (int i = threadIdx.x; i < total; i += PF_WARPS * 32) {
        const int r = i / cpr, c = i - r * cpr;
        const int d = c << 3;
        const bool rv = (row0 + r) < nvalid;
        const __half* src = base + (long long)(rv ? row0 + r : 0) * row_stride;
        __half* s = dst + r * ld + d;
        if (fast) {
            const bool in = rv && d < hd;
            cp_async16(s, in ? src + d : base, in ? 16 : 0);
        } else {
            // hd is even, so pairs never straddle hd and rows are 4-byte aligned.
            __half2 v[4];
#pragma unroll
            for (int e = 0; e < 4; ++e)
                v[e] = (rv && d + 2 * e < hd) ? *reinterpret_cast<const __half2*>(src + d + 2 * e)
                                              : __floats2half2_rn(0.0f, 0.0f);
            *reinterpret_cast<uint4*>(s) = *reinterpret_cast<const uint4*>(v);
        }
    }
}

// S(16 x 64) = Q_warp · K_tileᵀ, raw (unscaled) f32.
LAV2_DEV void pf_scores(float (&s)[8][4], const __half* qs, const __half* ks, int ld, int hd_pad) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = 0.0f;
    const __half* qrow = qs + (lane & 15) * ld + ((lane >> 4) << 3);
    const __half* krow = ks + ((lane & 7) + ((lane >> 4) << 3)) * ld + (((lane >> 3) & 1) << 3);
    for (int kd = 0; kd < hd_pad; kd += 16) {
        u32 qa[4];
        ldmatrix_x4(qa[0], qa[1], qa[2], qa[3], qrow + kd);
#pragma unroll
        for (int np = 0; np < 4; ++np) {
            u32 b0, b1, b2, b3;
            ldmatrix_x4(b0, b1, b2, b3, krow + np * 16 * ld + kd);
            mma_16816(s[2 * np], qa, b0, b1);
            mma_16816(s[2 * np + 1], qa, b2, b3);
        }
    }
}

// o(16 x dchunk) += P(16 x 64) · V_tile[:, d0 : d0 + dvalid]
LAV2_DEV void pf_pv(float (&o)[PF_NT_D][4], const float (&p)[8][4], const __half* vs, int ld, int d0,
                    int dvalid) {
    const int lane = threadIdx.x & 31;
    const __half* vrow = vs + ((lane & 7) + (((lane >> 3) & 1) << 3)) * ld + d0 + ((lane >> 4) << 3);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        u32 pa[4];
        pa[0] = pack_half2(p[2 * kk][0], p[2 * kk][1]);
        pa[1] = pack_half2(p[2 * kk][2], p[2 * kk][3]);
        pa[2] = pack_half2(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        pa[3] = pack_half2(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
        for (int dp = 0; dp < PF_NT_D / 2; ++dp) {
            if (dp * 16 < dvalid) {
                u32 b0, b1, b2, b3;
                ldmatrix_x4_trans(b0, b1, b2, b3, vrow + kk * 16 * ld + dp * 16);
                mma_16816(o[2 * dp], pa, b0, b1);
                mma_16816(o[2 * dp + 1], pa, b2, b3);
            }
        }
    }
}

LAV2_DEV float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
LAV2_DEV float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Scales raw scores into the log2 domain and masks: key j (absolute index key0 + column) is visible to
// row r when j < key_limit[r]. Returns the per-row maxima over this thread's quad.
LAV2_DEV void pf_scale_mask(float (&s)[8][4], float scale_log2, int key0, const int (&key_limit)[2]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int j = key0 + nt * 8 + (lane & 3) * 2 + (e & 1);
            s[nt][e] = j < key_limit[e >> 1] ? s[nt][e] * scale_log2 : LAV2_NEG_INF;
        }
}

template <bool PROMPT>
LAV2_DEV void attention_prefill(const __half* __restrict__ q, const __half* __restrict__ k_cache,
                                const __half* __restrict__ v_cache, const __half* __restrict__ prompt_k,
                                const __half* __restrict__ prompt_v, const float* __restrict__ gate,
                                __half* __restrict__ out, const int* __restrict__ start_pos, int T,
                                int n_heads, int n_kv_heads, int hd, int prompt_len, float scale) {
    extern __shared__ __align__(16) unsigned char pf_smem_raw[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int h = blockIdx.y;
    const int kvh = h / (n_heads / n_kv_heads);
    // Heaviest (last) query tiles first: better tail behaviour for the causal triangle.
    const int q0 = (gridDim.x - 1 - blockIdx.x) * PF_BQ;
    const int sp = *start_pos;
    const int hd_pad = (hd + 15) & ~15;
    PfSmem sm;
    sm.ld = hd_pad + 8;
    sm.q = reinterpret_cast<__half*>(pf_smem_raw);
    sm.k = sm.q + PF_BQ * sm.ld;
    sm.v = sm.k + 2 * PF_BKV * sm.ld;
    const int tile_elems = PF_BKV * sm.ld;
    const float scale_log2 = scale * LAV2_LOG2E;

    const long long q_stride = (long long)n_heads * hd;
    const long long kv_stride = (long long)n_kv_heads * hd;
    const bool fast = (hd & 7) == 0 && aligned16(q) && aligned16(k_cache) && aligned16(v_cache) &&
                      (!PROMPT || !prompt_k || (aligned16(prompt_k) && aligned16(prompt_v)));
    const bool use_prompt = PROMPT && prompt_len > 0 && prompt_k != nullptr && prompt_v != nullptr;

    // Queries of this warp and the keys they may see.
    const int wq0 = q0 + warp * 16;
    const bool warp_active = wq0 < T;
    const int row_a = wq0 + (lane >> 2), row_b = row_a + 8;  // the two rows this thread holds
    const int n_keys = sp + T;                               // cache rows written so far
    int causal_limit[2];
    causal_limit[0] = min(sp + row_a + 1, n_keys);
    causal_limit[1] = min(sp + row_b + 1, n_keys);
    const int warp_key_end = sp + min(wq0 + 16, T);  // exclusive
    const int block_key_end = sp + min(q0 + PF_BQ, T);
    const int n_tiles = (block_key_end + PF_BKV - 1) / PF_BKV;

    pf_load_rows(sm.q, sm.ld, q + h * hd, q_stride, q0, PF_BQ, T, hd, hd_pad, fast);
    const __half* kbase = k_cache + kvh * hd;
    const __half* vbase = v_cache + kvh * hd;
    const int n_dchunks = (hd_pad + PF_DCHUNK - 1) / PF_DCHUNK;

    for (int dc = 0; dc < n_dchunks; ++dc) {
        const int d0 = dc * PF_DCHUNK;
        const int dvalid = min(PF_DCHUNK, hd_pad - d0);
        float o[PF_NT_D][4];
#pragma unroll
        for (int i = 0; i < PF_NT_D; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) o[i][j] = 0.0f;
        float m[2] = {LAV2_NEG_BIG, LAV2_NEG_BIG}, l[2] = {0.0f, 0.0f};

        // ---- causal pass over the cache, double-buffered ----
        pf_load_rows(sm.k, sm.ld, kbase, kv_stride, 0, PF_BKV, n_keys, hd, hd_pad, fast);
        pf_load_rows(sm.v, sm.ld, vbase, kv_stride, 0, PF_BKV, n_keys, hd, hd_pad, fast);
        cp_async_commit();
        for (int t = 0; t < n_tiles; ++t) {
            if (t + 1 < n_tiles) {
                const int nb = (t + 1) & 1;
                pf_load_rows(sm.k + nb * tile_elems, sm.ld, kbase, kv_stride, (t + 1) * PF_BKV, PF_BKV,
                             n_keys, hd, hd_pad, fast);
                pf_load_rows(sm.v + nb * tile_elems, sm.ld, vbase, kv_stride, (t + 1) * PF_BKV, PF_BKV,
                             n_keys, hd, hd_pad, fast);
            }
            cp_async_commit();
            cp_async_wait<1>();
            __syncthreads();
            const int key0 = t * PF_BKV;
            if (warp_active && key0 < warp_key_end) {
                const __half* ks = sm.k + (t & 1) * tile_elems;
                const __half* vs = sm.v + (t & 1) * tile_elems;
                float s[8][4];
                pf_scores(s, sm.q + warp * 16 * sm.ld, ks, sm.ld, hd_pad);
                pf_scale_mask(s, scale_log2, key0, causal_limit);
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    float mx = LAV2_NEG_INF;
#pragma unroll
                    for (int nt = 0; nt < 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
                    mx = quad_max(mx);
                    const float m_new = fmaxf(m[r], mx);
                    const float alpha = exp2f(m[r] - m_new);
                    float sum = 0.0f;
#pragma unroll
                    for (int nt = 0; nt < 8; ++nt) {
                        s[nt][2 * r] = exp2f(s[nt][2 * r] - m_new);
                        s[nt][2 * r + 1] = exp2f(s[nt][2 * r + 1] - m_new);
                        sum += s[nt][2 * r] + s[nt][2 * r + 1];
                    }
                    l[r] = l[r] * alpha + sum;  // per-thread partial; reduced over the quad at the end
                    m[r] = m_new;
#pragma unroll
                    for (int nt = 0; nt < PF_NT_D; ++nt) {
                        o[nt][2 * r] *= alpha;
                        o[nt][2 * r + 1] *= alpha;
                    }
                }
                pf_pv(o, s, vs, sm.ld, d0, dvalid);
            }
            __syncthreads();  // the buffer just read is refilled by the next iteration's prefetch
        }
        cp_async_wait<0>();

#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float inv = 1.0f / fmaxf(quad_sum(l[r]), 1e-30f);
#pragma unroll
            for (int nt = 0; nt < PF_NT_D; ++nt) {
                o[nt][2 * r] *= inv;
                o[nt][2 * r + 1] *= inv;
            }
        }

        // ---- gated prompt pass: separate softmax, no mask ----
        // Two sweeps (statistics, then P·V with P pre-scaled by gate / l) so that one accumulator
        // suffices; with prompt_len <= 64 the single tile is loaded once and reused.
        if (use_prompt) {
            const float g = gate ? gate[h] : 1.0f;
            const __half* pk = prompt_k + kvh * hd;
            const __half* pv = prompt_v + kvh * hd;
            const int n_ptiles = (prompt_len + PF_BKV - 1) / PF_BKV;
            float m2[2] = {LAV2_NEG_BIG, LAV2_NEG_BIG}, l2[2] = {0.0f, 0.0f};
            const bool single = n_ptiles == 1;
            int loaded = -1;  // prompt tile held in sm.k (and sm.v when sweep 1 or single)
            for (int sweep = 0; sweep < 2; ++sweep) {
                for (int t = 0; t < n_ptiles; ++t) {
                    if (loaded != t) {
                        __syncthreads();  // everyone is done with the previous tile
                        pf_load_rows(sm.k, sm.ld, pk, kv_stride, t * PF_BKV, PF_BKV, prompt_len, hd, hd_pad,
                                     fast);
                        if (sweep == 1 || single)
                            pf_load_rows(sm.v, sm.ld, pv, kv_stride, t * PF_BKV, PF_BKV, prompt_len, hd,
                                         hd_pad, fast);
                        cp_async_commit();
                        cp_async_wait<0>();
                        __syncthreads();
                        loaded = t;
                    }
                    if (!warp_active) continue;
                    float s[8][4];
                    const int plimit[2] = {prompt_len, prompt_len};
                    pf_scores(s, sm.q + warp * 16 * sm.ld, sm.k, sm.ld, hd_pad);
                    pf_scale_mask(s, scale_log2, t * PF_BKV, plimit);
                    if (sweep == 0) {
#pragma unroll
                        for (int r = 0; r < 2; ++r) {
                            float mx = LAV2_NEG_INF;
#pragma unroll
                            for (int nt = 0; nt < 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
                            const float m_new = fmaxf(m2[r], quad_max(mx));
                            float sum = 0.0f;
#pragma unroll
                            for (int nt = 0; nt < 8; ++nt)
                                sum += exp2f(s[nt][2 * r] - m_new) + exp2f(s[nt][2 * r + 1] - m_new);
                            l2[r] = l2[r] * exp2f(m2[r] - m_new) + sum;
                            m2[r] = m_new;
                        }
                    } else {
                        float coef[2];
#pragma unroll
                        for (int r = 0; r < 2; ++r) coef[r] = g / fmaxf(quad_sum(l2[r]), 1e-30f);
#pragma unroll
                        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                            for (int e = 0; e < 4; ++e) s[nt][e] = exp2f(s[nt][e] - m2[e >> 1]) * coef[e >> 1];
                        pf_pv(o, s, sm.v, sm.ld, d0, dvalid);
                    }
                }
                // Sweep 0 loaded K only (unless single): sweep 1 reloads every tile with V.
                if (sweep == 0 && !single) loaded = -1;
            }
            __syncthreads();
        }

        // ---- store ----
        if (warp_active) {
#pragma unroll
            for (int nt = 0; nt < PF_NT_D; ++nt) {
                const int d = d0 + nt * 8 + (lane & 3) * 2;
                if (nt * 8 < dvalid && d < hd) {
                    if (row_a < T)
                        *reinterpret_cast<__half2*>(out + (long long)row_a * q_stride + h * hd + d) =
                            __floats2half2_rn(o[nt][0], o[nt][1]);
                    if (row_b < T)
                        *reinterpret_cast<__half2*>(out + (long long)row_b * q_stride + h * hd + d) =
                            __floats2half2_rn(o[nt][2], o[nt][3]);
                }
            }
        }
        __syncthreads();  // K/V buffers are reloaded by the next d-chunk
    }
}

// ---------------------------------------------------------------------------------------------
// Decode (T == 1): split-K over the sequence, SIMT. A block (split s, head h) covers keys
// [s·chunk, min(L, (s+1)·chunk)) with L = start_pos + 1 and chunk = ceil(L / n_splits), in tiles of
// 64 keys: scores with TPK threads per key (16-byte loads), probabilities in shared memory, then
// P·V with threads over (key group, dim pair).
// ---------------------------------------------------------------------------------------------
constexpr int DC_THREADS = 128;
constexpr int DC_TK = 64;
constexpr int DC_MAX_HD = 256;

LAV2_DEV float dot_q_row(const float* qs, const __half* row, int c, int hd, bool vec) {
    // chunk c = dims [8c, 8c + 8) ∩ [0, hd)
    const int d = c << 3;
    float acc = 0.0f;
    if (vec) {
        float f[8];
        unpack8(ld_nc16(row + d), f);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc = fmaf(qs[d + j], f[j], acc);
    } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            if (d + 2 * e < hd) {
                const float2 f = __half22float2(*reinterpret_cast<const __half2*>(row + d + 2 * e));
                acc = fmaf(qs[d + 2 * e], f.x, acc);
                acc = fmaf(qs[d + 2 * e + 1], f.y, acc);
            }
        }
    }
    return acc;
}

// q (8 floats in registers) · row[0 .. min(8, n)); n is even.
LAV2_DEV float dot8(const float (&qr)[8], const __half* row, int n, bool vec) {
    float acc = 0.0f;
    if (vec) {
        float f[8];
        unpack8(ld_nc16(row), f);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc = fmaf(qr[j], f[j], acc);
    } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            if (2 * e < n) {
                const float2 f = __half22float2(*reinterpret_cast<const __half2*>(row + 2 * e));
                acc = fmaf(qr[2 * e], f.x, acc);
                acc = fmaf(qr[2 * e + 1], f.y, acc);
            }
        }
    }
    return acc;
}

// Ungated prompt attention for one query row by a whole block of DC_THREADS threads:
// returns softmax(q·K_Pᵀ) · V_P for dims tid and tid + 128 (normalized). qs holds q·scale·log2 e.
LAV2_DEV void prompt_attend_block(const float* qs, const __half* pk, const __half* pv, long long stride,
                                  int hd, int prompt_len, float* ss, float (&res)[2]) {
    const int tid = threadIdx.x;
    const bool vec = (hd & 7) == 0 && aligned16(pk);
    const int nck = (hd + 7) >> 3;
    float m = LAV2_NEG_BIG, l = 0.0f;
    float acc[2] = {0.0f, 0.0f};
    for (int k0 = 0; k0 < prompt_len; k0 += DC_THREADS) {
        const int j = k0 + tid;
        float sc = LAV2_NEG_INF;
        if (j < prompt_len) {
            const __half* row = pk + (long long)j * stride;
            sc = 0.0f;
            for (int c = 0; c < nck; ++c) sc += dot_q_row(qs, row, c, hd, vec);
        }
        __syncthreads();  // previous tile's probabilities are no longer read
        ss[tid] = sc;
        __syncthreads();
        float mx = LAV2_NEG_INF;
        const int nk = min(DC_THREADS, prompt_len - k0);
        for (int i = 0; i < nk; ++i) mx = fmaxf(mx, ss[i]);
        const float m_new = fmaxf(m, mx);
        const float alpha = exp2f(m - m_new);
        l *= alpha;
        acc[0] *= alpha;
        acc[1] *= alpha;
        for (int i = 0; i < nk; ++i) {
            const float p = exp2f(ss[i] - m_new);
            l += p;
            const __half* vrow = pv + (long long)(k0 + i) * stride;
            if (tid < hd) acc[0] = fmaf(p, __half2float(vrow[tid]), acc[0]);
            if (tid + DC_THREADS < hd) acc[1] = fmaf(p, __half2float(vrow[tid + DC_THREADS]), acc[1]);
        }
        m = m_new;
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    res[0] = acc[0] * inv;
    res[1] = acc[1] * inv;
}

}  // namespace

// grid (ceil(T / 64), n_heads, batch), block 128, dynamic smem 640 * (roundup(head_dim, 16) + 8) bytes.
// T is the tokens of one sequence.
extern "C" __global__ void __launch_bounds__(PF_WARPS * 32)
    adapter_attention_prefill_f16(const __half* q, const __half* k_cache, const __half* v_cache,
                                  const __half* prompt_k, const __half* prompt_v, const float* gate,
                                  __half* out, const int* start_pos, int T, int n_heads, int n_kv_heads,
                                  int head_dim, int prompt_len, float scale, long long cache_stride) {
    const long long rows = (long long)blockIdx.z * T * n_heads * head_dim;
    const long long cache = (long long)blockIdx.z * cache_stride;
    attention_prefill<true>(q + rows, k_cache + cache, v_cache + cache, prompt_k, prompt_v, gate, out + rows,
                            start_pos, T, n_heads, n_kv_heads, head_dim, prompt_len, scale);
}

// Causal attention alone (the unfused variant's first pass); same launch as the prefill.
extern "C" __global__ void __launch_bounds__(PF_WARPS * 32)
    adapter_attention_causal_prefill_f16(const __half* q, const __half* k_cache, const __half* v_cache,
                                 __half* out, const int* start_pos, int T, int n_heads, int n_kv_heads,
                                 int head_dim, float scale, long long cache_stride) {
    const long long rows = (long long)blockIdx.z * T * n_heads * head_dim;
    const long long cache = (long long)blockIdx.z * cache_stride;
    attention_prefill<false>(q + rows, k_cache + cache, v_cache + cache, nullptr, nullptr, nullptr, out + rows,
                             start_pos, T, n_heads, n_kv_heads, head_dim, 0, scale);
}

// grid (n_splits, n_heads, batch), block 128, no dynamic smem.
// partial_acc [batch, n_heads, n_splits, hd]: unnormalized Σ p·v of the split, p = 2^(s - m);
// partial_ml [batch, n_heads, n_splits, 2]: (m, l) with m the split's running max in the log2 domain
// and l the Σ p. An empty split writes acc = 0, m = -1e30, l = 0.
extern "C" __global__ void __launch_bounds__(DC_THREADS)
    adapter_attention_decode_split_f16(const __half* q, const __half* k_cache, const __half* v_cache,
                                       const int* start_pos, int n_heads, int n_kv_heads, int head_dim,
                                       int n_splits, float* partial_acc, float* partial_ml, float scale,
                                       long long cache_stride) {
    __shared__ float qs[DC_MAX_HD];
    __shared__ float ss[DC_TK];
    __shared__ float ps[DC_TK];
    __shared__ float red[DC_THREADS * 2];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int split = blockIdx.x, h = blockIdx.y;
    const int hd = head_dim;
    const long long b = blockIdx.z;
    q += b * n_heads * hd;
    k_cache += b * cache_stride;
    v_cache += b * cache_stride;
    partial_acc += b * n_heads * n_splits * hd;
    partial_ml += b * n_heads * n_splits * 2;
    const int kvh = h / (n_heads / n_kv_heads);
    const int L = *start_pos + 1;
    const int chunk = (L + n_splits - 1) / n_splits;
    const int k_begin = split * chunk;
    const int k_end = min(L, k_begin + chunk);
    float* acc_out = partial_acc + ((long long)h * n_splits + split) * hd;
    float* ml_out = partial_ml + ((long long)h * n_splits + split) * 2;

    if (k_begin >= k_end) {
        for (int d = tid; d < hd; d += DC_THREADS) acc_out[d] = 0.0f;
        if (tid == 0) {
            ml_out[0] = LAV2_NEG_BIG;
            ml_out[1] = 0.0f;
        }
        return;
    }

    const float scale_log2 = scale * LAV2_LOG2E;
    for (int d = tid; d < hd; d += DC_THREADS) qs[d] = __half2float(q[h * hd + d]) * scale_log2;
    __syncthreads();

    const long long stride = (long long)n_kv_heads * hd;
    const __half* kb = k_cache + kvh * hd;
    const __half* vb = v_cache + kvh * hd;
    const bool vec = (hd & 7) == 0 && aligned16(k_cache);
    const int nck = (hd + 7) >> 3;
    int tpk = 2;  // >= 2 so that a pass never covers more than DC_TK keys
    while (tpk < nck && tpk < 32) tpk <<= 1;
    const int kpp = DC_THREADS / tpk;  // keys per pass
    const int slot = tid / tpk, sub = tid % tpk;
    // tpk >= nck whenever hd <= 256, so each thread owns at most one 8-dim chunk (sub) of q: keep it
    // in registers rather than re-reading shared memory with bank conflicts.
    float qreg[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) qreg[e] = sub * 8 + e < hd ? qs[sub * 8 + e] : 0.0f;
    const bool has_chunk = sub < nck;
    const int np = hd >> 1;            // dim pairs
    const int kg_n = DC_THREADS / np;  // key groups for P·V
    const int pd = tid % np, kg = tid / np;

    float m = LAV2_NEG_BIG, l = 0.0f;
    float a0 = 0.0f, a1 = 0.0f;
    for (int t0 = k_begin; t0 < k_end; t0 += DC_TK) {
        for (int base = 0; base < DC_TK; base += kpp) {
            const int j = t0 + base + slot;
            float part = 0.0f;
            if (j < k_end && has_chunk) part = dot8(qreg, kb + (long long)j * stride + sub * 8, hd - sub * 8, vec);
            for (int o = tpk >> 1; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
            if (sub == 0) ss[base + slot] = j < k_end ? part : LAV2_NEG_INF;
        }
        __syncthreads();
        // Every warp derives the same max / sum, so no extra broadcast step is needed.
        const float v0 = ss[lane], v1 = ss[lane + 32];
        const float m_new = fmaxf(m, warp_max(fmaxf(v0, v1)));
        const float p0 = exp2f(v0 - m_new), p1 = exp2f(v1 - m_new);
        const float alpha = exp2f(m - m_new);
        l = l * alpha + warp_sum(p0 + p1);
        m = m_new;
        if (warp == 0) {
            ps[lane] = p0;
            ps[lane + 32] = p1;
        }
        __syncthreads();
        a0 *= alpha;
        a1 *= alpha;
        if (kg < kg_n) {
            const int nk = min(DC_TK, k_end - t0);
            for (int j = kg; j < nk; j += kg_n) {
                const float p = ps[j];
                const float2 v =
                    __half22float2(*reinterpret_cast<const __half2*>(vb + (long long)(t0 + j) * stride + 2 * pd));
                a0 = fmaf(p, v.x, a0);
                a1 = fmaf(p, v.y, a1);
            }
        }
    }

    if (kg < kg_n) {
        red[kg * hd + 2 * pd] = a0;
        red[kg * hd + 2 * pd + 1] = a1;
    }
    __syncthreads();
    for (int d = tid; d < hd; d += DC_THREADS) {
        float s = 0.0f;
        for (int g = 0; g < kg_n; ++g) s += red[g * hd + d];
        acc_out[d] = s;
    }
    if (tid == 0) {
        ml_out[0] = m;
        ml_out[1] = l;
    }
}

// grid (n_heads, batch), block 128, no dynamic smem. Merges the splits of
// adapter_attention_decode_split_f16 and adds gate[h] · softmax(q·K_Pᵀ·scale)·V_P. q is the same
// [batch, n_heads, hd] query; out [batch, n_heads, hd].
extern "C" __global__ void __launch_bounds__(DC_THREADS)
    adapter_attention_decode_reduce_f16(const float* partial_acc, const float* partial_ml,
                                        const __half* prompt_k, const __half* prompt_v, const float* gate,
                                        __half* out, int n_heads, int n_kv_heads, int head_dim,
                                        int n_splits, int prompt_len, float scale, const __half* q) {
    __shared__ float qs[DC_MAX_HD];
    __shared__ float ss[DC_THREADS];
    const int tid = threadIdx.x, h = blockIdx.x, hd = head_dim;
    const long long b = blockIdx.y;
    q += b * n_heads * hd;
    out += b * n_heads * hd;
    partial_acc += b * n_heads * n_splits * hd;
    partial_ml += b * n_heads * n_splits * 2;
    const int kvh = h / (n_heads / n_kv_heads);
    const float* ml = partial_ml + (long long)h * n_splits * 2;
    const float* pa = partial_acc + (long long)h * n_splits * hd;

    float M = LAV2_NEG_BIG;
    for (int s = 0; s < n_splits; ++s) M = fmaxf(M, ml[2 * s]);
    float L = 0.0f;
    for (int s = 0; s < n_splits; ++s) L += ml[2 * s + 1] * exp2f(ml[2 * s] - M);
    const float invL = L > 0.0f ? 1.0f / L : 0.0f;
    float res[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int d = tid + i * DC_THREADS;
        if (d < hd) {
            float a = 0.0f;
            for (int s = 0; s < n_splits; ++s) a += pa[(long long)s * hd + d] * exp2f(ml[2 * s] - M);
            res[i] = a * invL;
        }
    }

    if (prompt_len > 0 && prompt_k != nullptr && prompt_v != nullptr) {
        const float scale_log2 = scale * LAV2_LOG2E;
        for (int d = tid; d < hd; d += DC_THREADS) qs[d] = __half2float(q[h * hd + d]) * scale_log2;
        __syncthreads();
        float pr[2];
        const long long stride = (long long)n_kv_heads * hd;
        prompt_attend_block(qs, prompt_k + kvh * hd, prompt_v + kvh * hd, stride, hd, prompt_len, ss, pr);
        const float g = gate ? gate[h] : 1.0f;
        res[0] += g * pr[0];
        res[1] += g * pr[1];
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int d = tid + i * DC_THREADS;
        if (d < hd) out[h * hd + d] = __float2half_rn(res[i]);
    }
}

// Unfused gated prompt term, added in place: out[t,h] += gate[h] · softmax(q[t,h]·K_Pᵀ·scale)·V_P.
// grid (T, n_heads), block 128, no dynamic smem.
extern "C" __global__ void __launch_bounds__(DC_THREADS)
    adapter_attention_prompt_f16(const __half* q, const __half* prompt_k, const __half* prompt_v,
                                 const float* gate, __half* out, int T, int n_heads, int n_kv_heads,
                                 int head_dim, int prompt_len, float scale) {
    __shared__ float qs[DC_MAX_HD];
    __shared__ float ss[DC_THREADS];
    const int tid = threadIdx.x, t = blockIdx.x, h = blockIdx.y, hd = head_dim;
    if (t >= T || prompt_len <= 0 || prompt_k == nullptr || prompt_v == nullptr) return;
    const int kvh = h / (n_heads / n_kv_heads);
    const long long row = ((long long)t * n_heads + h) * hd;
    const float scale_log2 = scale * LAV2_LOG2E;
    for (int d = tid; d < hd; d += DC_THREADS) qs[d] = __half2float(q[row + d]) * scale_log2;
    __syncthreads();
    float pr[2];
    prompt_attend_block(qs, prompt_k + kvh * hd, prompt_v + kvh * hd, (long long)n_kv_heads * hd, hd,
                        prompt_len, ss, pr);
    const float g = gate ? gate[h] : 1.0f;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int d = tid + i * DC_THREADS;
        if (d < hd) out[row + d] = __float2half_rn(__half2float(out[row + d]) + g * pr[i]);
    }
}
