// cp.async: .ca 4/8/16 bytes and .cg 16 bytes with src-size < cp-size (zero fill), commit_group,
// wait_group N and wait_all; visibility of the data only after the wait.
#include <cstdint>

__device__ __forceinline__ uint32_t smem(const void* p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

// One warp. Shared regions (per thread t): r4[t*4..+4], r8[t*8..+8], r16a[t*16..+16] (.ca),
// r16b[t*16..+16] (.cg). Every region is first filled with the byte `fill`. Source offsets in
// `src`: r4 from 0, r8 from 128, r16a from 384, r16b from 896 (1408 bytes). src-size per thread
// and copy: sz[0*32+t] (0..4), sz[1*32+t] (0..8), sz[2*32+t], sz[3*32+t] (0..16).
// Groups: G0 = {r4}, G1 = {r8}, G2 = {r16a, r16b}.
// out (bytes) = [3][1408] snapshots of the shared block, each taken (after a __syncwarp) of the
// regions that are complete by then: [0][0,128) after wait_group 2 (G0), [1][0,384) after
// wait_group 1 (G0, G1), [2][0,1408) after wait_all.
extern "C" __global__ void cp_async_groups(const unsigned char* src, const int* sz,
                                           unsigned char* out, int fill) {
    __shared__ __align__(16) unsigned char sh[1408];
    int t = threadIdx.x;
    for (int i = 0; i < 44; i++) sh[t * 44 + i] = (unsigned char)fill;  // 1408 = 32 * 44
    __syncwarp();
    unsigned char* r4 = sh;
    unsigned char* r8 = sh + 128;
    unsigned char* r16a = sh + 384;
    unsigned char* r16b = sh + 896;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem(r4 + t * 4)),
                 "l"(src + t * 4), "r"(sz[t]) : "memory");
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem(r8 + t * 8)),
                 "l"(src + 128 + t * 8), "r"(sz[32 + t]) : "memory");
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem(r16a + t * 16)),
                 "l"(src + 384 + t * 16), "r"(sz[64 + t]) : "memory");
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem(r16b + t * 16)),
                 "l"(src + 896 + t * 16), "r"(sz[96 + t]) : "memory");
    asm volatile("cp.async.commit_group;\n" ::: "memory");

    // (Each thread snapshots its own fixed 44-byte slice: 1408 = 32 * 44.)
    asm volatile("cp.async.wait_group 2;\n" ::: "memory");
    __syncwarp();
    for (int i = 0; i < 44; i++)
        if (t * 44 + i < 128) out[t * 44 + i] = sh[t * 44 + i];
    __syncwarp();
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    __syncwarp();
    for (int i = 0; i < 44; i++)
        if (t * 44 + i < 384) out[1408 + t * 44 + i] = sh[t * 44 + i];
    __syncwarp();
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncwarp();
    for (int i = 0; i < 44; i++) out[2 * 1408 + t * 44 + i] = sh[t * 44 + i];
}

// Full-size copies without src-size, 128 threads, wait_group 0 + __syncthreads, then every thread
// reads another warp's data.
extern "C" __global__ void cp_async_full(const float4* src, float4* out) {
    __shared__ float4 sh[128];
    int t = threadIdx.x;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem(&sh[t])), "l"(src + t)
                 : "memory");
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();
    out[t] = sh[(t + 37) % 128];
}

// Visibility: shared is filled with `fill`, a 16-byte copy is issued and committed, the thread
// reads its own destination before any wait (must be the old content), after wait_group 1 with a
// second, younger group outstanding (still only the first is guaranteed), and after wait_all.
// out: [3][32][16] bytes. Only run with checks off (reading before the wait is a bug).
extern "C" __global__ void cp_async_visibility(const unsigned char* src, unsigned char* out,
                                               int fill) {
    __shared__ __align__(16) unsigned char sh[2 * 512];
    int t = threadIdx.x;
    for (int i = 0; i < 32; i++) sh[t * 32 + i] = (unsigned char)fill;
    __syncwarp();
    unsigned char* a = sh + t * 32;       // group 0
    unsigned char* b = sh + t * 32 + 16;  // group 1
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16;\n" ::"r"(smem(a)), "l"(src + t * 16)
                 : "memory");
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    for (int i = 0; i < 16; i++) out[t * 16 + i] = ((volatile unsigned char*)a)[i];
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16;\n" ::"r"(smem(b)),
                 "l"(src + 512 + t * 16) : "memory");
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    for (int i = 0; i < 16; i++) out[512 + t * 16 + i] = ((volatile unsigned char*)a)[i];
    for (int i = 0; i < 16; i++) out[1024 + t * 16 + i] = ((volatile unsigned char*)b)[i];
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    for (int i = 0; i < 16; i++) out[1536 + t * 16 + i] = ((volatile unsigned char*)b)[i];
}
