// embedding.cu — token embedding lookup:
//   embedding_f16: out[t, :] = table[ids[t], :] for table [vocab, dim]; ids read from device memory
//   (the decode graph feeds back the sampled token); an id outside [0, vocab) writes zeros (the host
//   validates ids, this only keeps a bad id from reading out of bounds).
#include "common.cuh"

using namespace lav2;

// grid (T), block 256 (any multiple of 32).
extern "C" __global__ void embedding_f16(const int* ids, const __half* table, __half* out, int T, int dim,
                                         int vocab) {
    const int t = blockIdx.x;
    if (t >= T) return;
    const int id = ids[t];
    const bool ok = id >= 0 && id < vocab;
    const __half* src = table + (long long)(ok ? id : 0) * dim;
    __half* dst = out + (long long)t * dim;
    if ((dim & 7) == 0 && aligned16(table) && aligned16(out)) {
        const int n8 = dim >> 3;
        for (int i = threadIdx.x; i < n8; i += blockDim.x)
            reinterpret_cast<uint4*>(dst)[i] = ok ? ld_nc16(src + 8 * i) : make_uint4(0, 0, 0, 0);
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = ok ? src[i] : __float2half_rn(0.0f);
    }
}
