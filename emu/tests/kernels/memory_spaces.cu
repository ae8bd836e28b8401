// Memory spaces: .local arrays, initialised __device__ globals, __constant__ data, static and
// dynamic shared memory, generic pointers to either.
#include <cstdint>

__device__ int g_table[16] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3};
__device__ float g_scale = 2.5f;
__device__ unsigned long long g_wide = 0x0123456789abcdefull;
__device__ unsigned g_zero[8];          // no initializer: zeros
__device__ unsigned g_written[256];     // written by one kernel, read by the next / the host
__constant__ float c_coef[8] = {0.5f, -1.0f, 2.0f, 0.25f, 8.0f, -0.125f, 3.0f, 1.5f};
__constant__ int c_host[32];            // filled by the host before the launch

// A per-thread array indexed with data-dependent indices (so it lives in .local): 32 words
// initialised from `vals`, then `rounds` read-modify-writes at idx-chosen positions.
extern "C" __global__ void local_array(const int* vals, const int* idx, int* out, int rounds) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int arr[32];
    for (int k = 0; k < 32; k++) arr[k] = vals[i * 32 + k];
    for (int r = 0; r < rounds; r++) {
        int a = idx[i * rounds + r] & 31;
        int b = (idx[i * rounds + r] >> 8) & 31;
        arr[a] = arr[a] * 3 + arr[b];
    }
    int acc = 0;
    for (int k = 0; k < 32; k++) acc = acc * 31 + arr[k];
    out[i] = acc;
}

// Reads the initialised globals and constants with dynamic indices. out: [n][6]
extern "C" __global__ void read_globals(const int* idx, float* outf, int* outi, unsigned long long* outw) {
    int i = threadIdx.x;
    int k = idx[i];
    outi[i * 4 + 0] = g_table[k & 15];
    outi[i * 4 + 1] = (int)g_zero[k & 7];
    outi[i * 4 + 2] = c_host[k & 31];
    outi[i * 4 + 3] = g_table[(k >> 4) & 15] + c_host[(k >> 8) & 31];
    outf[i * 2 + 0] = c_coef[k & 7] * g_scale;
    outf[i * 2 + 1] = c_coef[(k >> 3) & 7];
    outw[i] = g_wide ^ (unsigned long long)k;
}

extern "C" __global__ void write_global(const unsigned* in) {
    g_written[threadIdx.x] = in[threadIdx.x] * 5u + 1u;
}

extern "C" __global__ void read_global(unsigned* out) {
    out[threadIdx.x] = g_written[255 - threadIdx.x];
}

// Static shared (st, 1 KB) next to dynamic shared (dyn, `words` u32): both written with different
// patterns, a barrier, then read back mirrored; generic pointers (flag picks shared or global).
extern "C" __global__ void shared_static_dynamic(const unsigned* in, unsigned* out, unsigned* gbuf,
                                                 int words, int flag) {
    __shared__ unsigned st[256];
    extern __shared__ __align__(16) unsigned dyn[];
    int t = threadIdx.x;
    int nt = blockDim.x;
    for (int k = t; k < 256; k += nt) st[k] = in[k] ^ 0x5a5a5a5au;
    for (int k = t; k < words; k += nt) dyn[k] = (unsigned)k * 0x9e3779b9u + in[k & 255];
    __syncthreads();
    unsigned acc = 0;
    for (int k = t; k < words; k += nt) acc += dyn[words - 1 - k] ^ st[k & 255];
    out[t] = acc;
    out[nt + t] = st[255 - (t & 255)];
    // generic pointer: shared or global chosen at run time
    unsigned* p = (flag & 1) ? st : gbuf;
    __syncthreads();
    p[t & 255] = (unsigned)t * 7u;
    __syncthreads();
    out[2 * nt + t] = p[(t + 1) & 255] + ((t & 255) == t ? 0u : 0u);
}

// nvcc's unrolled strided loop addresses shared memory as [%r + 128] with %r = base + i - 128:
// the 32-bit register wraps below zero and the immediate brings it back (32-bit address math).
extern "C" __global__ void strided_fill(unsigned char* out, int fill) {
    __shared__ unsigned char sh[1408];
    int t = threadIdx.x;
    for (int i = t; i < 1408; i += 32) sh[i] = (unsigned char)(fill + i);
    __syncwarp();
    for (int i = t; i < 1408; i += 32) out[i] = sh[1407 - i];
}


// Parameters of mixed sizes and alignments, including a by-value struct: the parameter buffer is
// packed at Kernel::params' offsets.
struct __align__(16) Quad { float x, y, z, w; };
struct Odd { char c; short s; int i; };
extern "C" __global__ void params_mixed(char c, double d, int i, Quad q, short s, Odd o,
                                        unsigned long long u, float f, unsigned long long* out) {
    out[0] = (unsigned long long)(long long)c;
    out[1] = __double_as_longlong(d);
    out[2] = (unsigned long long)(long long)i;
    out[3] = __float_as_uint(q.x) | ((unsigned long long)__float_as_uint(q.w) << 32);
    out[4] = __float_as_uint(q.y) | ((unsigned long long)__float_as_uint(q.z) << 32);
    out[5] = (unsigned long long)(long long)s;
    out[6] = (unsigned long long)(long long)o.c ^ ((unsigned long long)(unsigned short)o.s << 8) ^
             ((unsigned long long)(unsigned)o.i << 24);
    out[7] = u;
    out[8] = __float_as_uint(f);
}
