// rope_kv_write.cu — rotary position embedding fused with the KV-cache write, for T new tokens:
//   q [T, n_heads, hd] is rotated in place; k, v [T, n_kv_heads, hd] are read, and the rotated k and
//   the unchanged v are written to k_cache / v_cache [max_seq, n_kv_heads, hd] at rows start_pos + t.
// Token t has position start_pos + t (start_pos read from device memory: CUDA-graph replayable).
// A batch: the T rows are T / seq_len sequences of seq_len tokens; row t belongs to sequence
// b = t / seq_len at position start_pos + t % seq_len, and its cache block starts at row b·cache_rows.
// interleaved = 1 (Meta): pairs (2i, 2i+1); interleaved = 0 (HF rotate-half): pairs (i, i + hd/2).
// inv_freq_i = 1 / theta^(2i/hd) and angle = pos * inv_freq_i in f32, exactly as torch builds its
// tables, then precise sincosf: at positions in the thousands the fast __sinf is visibly off.
// k / v may be nullptr (q-only rotation); hd must be even.
#include "common.cuh"

using namespace lav2;

namespace {
// The cache row of token row t.
LAV2_DEV long long cache_row(int t, int start_pos, int seq_len, int cache_rows) {
    return (long long)(t / seq_len) * cache_rows + start_pos + t % seq_len;
}
}  // namespace

extern "C" __global__ void rope_kv_write_f16(__half* q, const __half* k, const __half* v, __half* k_cache,
                                             __half* v_cache, const int* start_pos, int T, int n_heads,
                                             int n_kv_heads, int head_dim, float theta, int interleaved,
                                             int seq_len, int cache_rows) {
    const int half_d = head_dim >> 1;
    const int sp = *start_pos;
    // Work items, one rotation pair (or one v pair) each: q pairs, then k pairs, then v pairs.
    const long long nq = (long long)T * n_heads * half_d;
    const long long nkv = (long long)T * n_kv_heads * half_d;
    const long long nk = (k != nullptr && k_cache != nullptr) ? nkv : 0;
    const long long nv = (v != nullptr && v_cache != nullptr) ? nkv : 0;
    const long long total = nq + nk + nv;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long w = (long long)blockIdx.x * blockDim.x + threadIdx.x; w < total; w += stride) {
        if (w >= nq + nk) {  // v: plain copy into the cache
            const long long u = w - nq - nk;
            const int i = (int)(u % half_d);
            const long long th = u / half_d;  // t * n_kv_heads + head
            const int t = (int)(th / n_kv_heads), hh = (int)(th % n_kv_heads);
            const long long src = th * head_dim + 2 * i;
            const long long dst = (cache_row(t, sp, seq_len, cache_rows) * n_kv_heads + hh) * head_dim + 2 * i;
            *reinterpret_cast<__half2*>(v_cache + dst) = *reinterpret_cast<const __half2*>(v + src);
            continue;
        }
        const bool is_q = w < nq;
        const long long u = is_q ? w : w - nq;
        const int nh = is_q ? n_heads : n_kv_heads;
        const int i = (int)(u % half_d);
        const long long th = u / half_d;
        const int t = (int)(th / nh);

        const float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        const float angle = (float)(sp + t % seq_len) * inv_freq;
        float sn, cs;
        sincosf(angle, &sn, &cs);

        const long long base = th * head_dim;
        const int i0 = interleaved ? 2 * i : i;
        const int i1 = interleaved ? 2 * i + 1 : i + half_d;
        const __half* src = is_q ? q : k;
        const float x0 = __half2float(src[base + i0]);
        const float x1 = __half2float(src[base + i1]);
        const __half y0 = __float2half_rn(x0 * cs - x1 * sn);
        const __half y1 = __float2half_rn(x0 * sn + x1 * cs);
        if (is_q) {
            q[base + i0] = y0;
            q[base + i1] = y1;
        } else {
            const int hh = (int)(th % n_kv_heads);
            const long long dst = (cache_row(t, sp, seq_len, cache_rows) * n_kv_heads + hh) * head_dim;
            k_cache[dst + i0] = y0;
            k_cache[dst + i1] = y1;
        }
    }
}
