// Atomics on global and shared memory: 32/64-bit integer add/min/max/exch/cas/and/or/xor, f32 and
// f64 add; `red` (atomicAdd with the result unused).
#include <cstdint>

// g (global u32 words): [0] ticket counter, [1] red sum, [2] min s32, [3] max s32, [4] min u32,
// [5] max u32, [6] and, [7] or, [8] xor, [9] cas-loop sum, [10] exch slot, [11] red.add.u32,
// [12] red.max.u32.
// g64 (u64): [0] add, [1] min s64, [2] max u64, [3] cas-loop sum, [4] exch slot, [5] red.add.u64.
// gf: [0] f32 add, [1] red.add.f32; gd: [0] f64 add.
// per-thread outputs: tickets[i], exch_old[i], exch64_old[i].
// shared: the same per block, written to sres[block][12] ([11]: red.shared.add.u32) and sres64[block][3], sf[block].
extern "C" __global__ void atomics(const unsigned* v32, const unsigned long long* v64,
                                   const float* vf, const double* vd,
                                   unsigned* g, unsigned long long* g64, float* gf, double* gd,
                                   unsigned* tickets, unsigned* exch_old,
                                   unsigned long long* exch64_old,
                                   unsigned* sres, unsigned long long* sres64, float* sf,
                                   unsigned* stickets) {
    __shared__ unsigned s[12];
    __shared__ unsigned long long s64[3];
    __shared__ float sfl;
    int t = threadIdx.x;
    int i = blockIdx.x * blockDim.x + t;
    if (t == 0) {
        s[0] = 0; s[1] = 0; s[2] = 0x7fffffff; s[3] = 0x80000000u; s[4] = 0xffffffffu; s[5] = 0;
        s[6] = 0xffffffffu; s[7] = 0; s[8] = 0; s[9] = 0; s[10] = 0xdeadbeefu; s[11] = 0;
        s64[0] = 0; s64[1] = 0x7fffffffffffffffull; s64[2] = 0;
        sfl = 0.0f;
    }
    __syncthreads();
    unsigned x = v32[i];
    unsigned long long y = v64[i];
    // global
    tickets[i] = atomicAdd(&g[0], 1u);
    atomicAdd(&g[1], x);  // red.global.add.u32
    atomicMin((int*)&g[2], (int)x);
    atomicMax((int*)&g[3], (int)x);
    atomicMin(&g[4], x);
    atomicMax(&g[5], x);
    atomicAnd(&g[6], x | 0x01000000u);
    atomicOr(&g[7], x & 0x00ff00ffu);
    atomicXor(&g[8], x);
    {
        unsigned old = atomicAdd(&g[9], 0u), assumed;
        do {
            assumed = old;
            old = atomicCAS(&g[9], assumed, assumed + (x & 0xffff));
        } while (old != assumed);
    }
    exch_old[i] = atomicExch(&g[10], (unsigned)i);
    atomicAdd(&g64[0], y);
    atomicMin((long long*)&g64[1], (long long)y);
    atomicMax(&g64[2], y);
    {
        unsigned long long old = atomicAdd(&g64[3], 0ull), assumed;
        do {
            assumed = old;
            old = atomicCAS(&g64[3], assumed, assumed + (y >> 8));
        } while (old != assumed);
    }
    exch64_old[i] = atomicExch(&g64[4], (unsigned long long)i * 0x100000001ull);
    atomicAdd(gf, vf[i]);
    atomicAdd(gd, vd[i]);
    // red forms, explicitly (nvcc emits atom with an unused result; ptxas would turn it into RED)
    asm volatile("red.global.add.u32 [%0], %1;" ::"l"(&g[11]), "r"(x) : "memory");
    asm volatile("red.global.max.u32 [%0], %1;" ::"l"(&g[12]), "r"(x) : "memory");
    asm volatile("red.global.add.f32 [%0], %1;" ::"l"(&gf[1]), "f"(vf[i]) : "memory");
    asm volatile("red.global.add.u64 [%0], %1;" ::"l"(&g64[5]), "l"(y) : "memory");
    // shared
    stickets[i] = atomicAdd(&s[0], 1u);
    atomicAdd(&s[1], x);
    atomicMin((int*)&s[2], (int)x);
    atomicMax((int*)&s[3], (int)x);
    atomicMin(&s[4], x);
    atomicMax(&s[5], x);
    atomicAnd(&s[6], x | 0x01000000u);
    atomicOr(&s[7], x & 0x00ff00ffu);
    atomicXor(&s[8], x);
    {
        unsigned old = atomicAdd(&s[9], 0u), assumed;
        do {
            assumed = old;
            old = atomicCAS(&s[9], assumed, assumed + (x & 0xffff));
        } while (old != assumed);
    }
    atomicExch(&s[10], (unsigned)t);
    atomicAdd(&s64[0], y);
    atomicMin((long long*)&s64[1], (long long)y);
    atomicMax(&s64[2], y);
    atomicAdd(&sfl, vf[i]);
    asm volatile("red.shared.add.u32 [%0], %1;" ::"r"((unsigned)__cvta_generic_to_shared(&s[11])), "r"(x) : "memory");
    __syncthreads();
    if (t < 12) sres[blockIdx.x * 12 + t] = s[t];
    if (t < 3) sres64[blockIdx.x * 3 + t] = s64[t];
    if (t == 0) sf[blockIdx.x] = sfl;
}
