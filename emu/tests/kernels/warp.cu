// Warp collectives, divergence/reconvergence and special registers.
#include <cstdint>

#define FULL 0xffffffffu

// One warp per 32 inputs. par[0..32): source lanes for idx, par[32]: delta for up/down,
// par[33]: xor mask, par[34]: idx source for width 8/16. out: [K][n] with K = 12.
extern "C" __global__ void shfl_ops(const int* in, const int* par, int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x % 32;
    int v = in[i];
    int d = par[32], m = par[33], w = par[34];
    out[0 * n + i] = __shfl_sync(FULL, v, par[lane]);
    out[1 * n + i] = __shfl_up_sync(FULL, v, d);
    out[2 * n + i] = __shfl_down_sync(FULL, v, d);
    out[3 * n + i] = __shfl_xor_sync(FULL, v, m);
    out[4 * n + i] = __shfl_sync(FULL, v, w, 8);
    out[5 * n + i] = __shfl_up_sync(FULL, v, d, 16);
    out[6 * n + i] = __shfl_down_sync(FULL, v, d, 8);
    out[7 * n + i] = __shfl_xor_sync(FULL, v, m, 16);
    // Partial masks: only odd lanes take part, sources among odd lanes.
    int r = -1;
    if (lane & 1) r = __shfl_sync(0xaaaaaaaau, v, (par[lane] | 1) & 31);
    out[8 * n + i] = r;
    // Even lanes only, xor 2 keeps the partner even.
    r = -1;
    if (!(lane & 1)) r = __shfl_xor_sync(0x55555555u, v, 2);
    out[9 * n + i] = r;
    // The low 20 lanes, shfl.down by 1 within segments of 4 (the last lane of each reads itself,
    // so no lane reads one outside the mask).
    r = -1;
    if (lane < 20) r = __shfl_down_sync(0x000fffffu, v, 1, 4);
    out[10 * n + i] = r;
    // A 64-bit value (two shfl).
    long long wide = ((long long)v << 32) | (unsigned)(v * 7);
    out[11 * n + i] = (int)(__shfl_sync(FULL, wide, 31 - lane) >> 32) ^
                      (int)__shfl_sync(FULL, wide, 31 - lane);
}

// Votes. out: [6][n]: ballot(full), all, any, ballot over the low 20 lanes (others -1),
// all within odd lanes (even -1), activemask inside a branch every lane of the warp takes.
extern "C" __global__ void vote_ops(const int* in, unsigned* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x % 32;
    int p = in[i];
    out[0 * n + i] = __ballot_sync(FULL, p & 1);
    out[1 * n + i] = __all_sync(FULL, p & 2);
    out[2 * n + i] = __any_sync(FULL, p & 4);
    unsigned r = 0xffffffffu;
    if (lane < 20) r = __ballot_sync(0x000fffffu, p & 1);
    out[3 * n + i] = r;
    r = 0xffffffffu;
    if (lane & 1) r = __all_sync(0xaaaaaaaau, p & 8);
    out[4 * n + i] = r;
    r = 0xffffffffu;
    if (p != 0x7fffffff) {  // the inputs never are: the whole warp is in here
        __syncwarp();
        r = __activemask();
    }
    out[5 * n + i] = r;
}

// Divergence and reconvergence: the two halves of the warp (odd/even lanes) compute differently,
// exchange within their half with partial-mask collectives and __syncwarp(mask), then the whole
// warp reconverges (__syncwarp) and exchanges again. Also a shared-memory hand-off between lanes
// ordered by __syncwarp.
extern "C" __global__ void diverge(const int* in, int* out) {
    __shared__ int buf[32];
    int lane = threadIdx.x;
    int x = in[lane];
    if (lane & 1) {
        x = x * 3 + 1;
        __syncwarp(0xaaaaaaaau);
        x += __shfl_sync(0xaaaaaaaau, x, (lane + 2) & 31);
    } else {
        x = x ^ 0x55;
        __syncwarp(0x55555555u);
        x += __shfl_xor_sync(0x55555555u, x, 2);
    }
    __syncwarp();
    x += __shfl_sync(FULL, x, 31 - lane);
    if (lane < 16) buf[lane] = x * 2;
    __syncwarp();
    if (lane >= 16) x += buf[lane - 16];
    __syncwarp();
    // A data-dependent loop: lanes iterate different numbers of times, then meet again.
    int k = in[lane] & 7;
    int acc = 0;
    for (int j = 0; j <= k; j++) acc += __shfl_sync(__activemask(), j, lane) + j;
    __syncwarp();
    out[lane] = x + acc;
}

// Independent thread scheduling: lane `waiter` spins until lane `setter` (same warp, other branch)
// sets a flag; only forward progress for diverged lanes makes this terminate. Atomics, so there is
// no data race. out[0] = 1 if the waiter saw the flag, out[1] = iterations (bounded).
extern "C" __global__ void its_flag(int* out, int waiter, int setter) {
    __shared__ int flag;
    int lane = threadIdx.x;
    if (lane == 0) flag = 0;
    __syncwarp();
    if (lane == waiter) {
        int it = 0;
        while (atomicAdd(&flag, 0) == 0 && it < 1000000) it++;
        out[0] = atomicAdd(&flag, 0);
        out[1] = it;
    } else if (lane == setter) {
        for (int j = 0; j < 10; j++) __nanosleep(1);
        atomicExch(&flag, 1);
    }
}

__device__ __forceinline__ unsigned laneid() {
    unsigned r;
    asm volatile("mov.u32 %0, %%laneid;" : "=r"(r));
    return r;
}
__device__ __forceinline__ unsigned warpid() {
    unsigned r;
    asm volatile("mov.u32 %0, %%warpid;" : "=r"(r));
    return r;
}

// Special registers with a 3-D grid and block. Each thread writes 14 words at the slot computed
// from its own registers: tid.xyz, ntid.xyz, ctaid.xyz, nctaid.xyz, laneid, warpid.
extern "C" __global__ void special_regs(unsigned* out) {
    unsigned lin = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
    unsigned nthr = blockDim.x * blockDim.y * blockDim.z;
    unsigned blk = blockIdx.x + blockIdx.y * gridDim.x + blockIdx.z * gridDim.x * gridDim.y;
    unsigned* o = out + (blk * nthr + lin) * 14;
    o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
    o[3] = blockDim.x; o[4] = blockDim.y; o[5] = blockDim.z;
    o[6] = blockIdx.x; o[7] = blockIdx.y; o[8] = blockIdx.z;
    o[9] = gridDim.x; o[10] = gridDim.y; o[11] = gridDim.z;
    o[12] = laneid();
    o[13] = warpid();
}
