// Kernels with deliberate bugs that the emulator's checks must report (and a few correct twins).
#include <cstdint>

// Off-by-one: `i <= n` lets thread n store one element past the end of out[n].
extern "C" __global__ void oob_store(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = 1.0f + i;
}

// Shared-memory out of bounds: thread 63 stores s[64] of a 64-element array.
extern "C" __global__ void oob_shared(float* out) {
    __shared__ float s[64];
    int t = threadIdx.x;
    s[t + 1] = 1.0f;
    __syncthreads();
    out[t] = s[t];
}

// Misaligned vector load: p + off (off = 1) is only 4-byte aligned, ld.v4 needs 16.
extern "C" __global__ void misaligned_v4(const float* p, int off, float* out) {
    float4 v = *reinterpret_cast<const float4*>(p + off);
    out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

// Race: the shared array is initialised (and fenced by a barrier), then every thread writes its
// slot and reads another warp's slot with no __syncthreads in between.
extern "C" __global__ void race_no_sync(const float* in, float* out) {
    __shared__ float s[256];
    int t = threadIdx.x;
    s[t] = 0.0f;
    __syncthreads();
    s[t] = in[t];
    // missing __syncthreads();
    out[t] = s[(t + 32) % blockDim.x];
}

// The fixed twin of race_no_sync.
extern "C" __global__ void race_fixed(const float* in, float* out) {
    __shared__ float s[256];
    int t = threadIdx.x;
    s[t] = 0.0f;
    __syncthreads();
    s[t] = in[t];
    __syncthreads();
    out[t] = s[(t + 32) % blockDim.x];
}

// Initcheck (shared): only the first 32 of 64 slots are written, every thread reads its own.
extern "C" __global__ void uninit_shared(float* out) {
    __shared__ float s[64];
    int t = threadIdx.x;
    if (t < 32) s[t] = 1.0f + t;
    __syncthreads();
    out[t] = s[t];
}

// Initcheck (global): `in` is allocated but never written by anyone.
extern "C" __global__ void uninit_global(const float* in, float* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    out[i] = in[i] * 2.0f;
}

// cp.async without cp.async.wait_group: reads the destination while the copy is in flight.
// The shared destination was never written before.
extern "C" __global__ void cp_async_no_wait(const float* in, float* out) {
    __shared__ __align__(16) float s[128];
    int t = threadIdx.x;
    uint32_t dst = (uint32_t)__cvta_generic_to_shared(&s[t]);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(in + t) : "memory");
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    // missing: asm volatile("cp.async.wait_group 0;");
    out[t] = s[t];
}

// Barrier in divergent code: threads 48..63 (live, they go on to store) never reach it.
extern "C" __global__ void divergent_barrier(float* out, int limit) {
    int t = threadIdx.x;
    if (t < limit) {
        __syncthreads();
    }
    out[t] = 1.0f + t;
}

// Dynamic shared memory: every thread writes, then reads back another thread's words, across
// the whole dynamic allocation (`words` 32-bit words).
extern "C" __global__ void dyn_smem(unsigned* out, int words) {
    extern __shared__ unsigned dsm[];
    int t = threadIdx.x;
    for (int i = t; i < words; i += blockDim.x) dsm[i] = (unsigned)i * 2654435761u;
    __syncthreads();
    unsigned acc = 0;
    for (int i = t; i < words; i += blockDim.x) acc ^= dsm[words - 1 - i];
    out[t] = acc;
}

// Any block size: each thread stores its index.
extern "C" __global__ void big_block(unsigned* out) {
    unsigned t = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
    out[t] = t;
}

// Divergent barrier whose non-arriving threads wait at a different barrier: a true deadlock.
extern "C" __global__ void barrier_deadlock(float* out) {
    int t = threadIdx.x;
    if (t < 48) {
        asm volatile("bar.sync 0;" ::: "memory");
    } else {
        asm volatile("bar.sync 1;" ::: "memory");
    }
    out[t] = 1.0f;
}

// A store through a pointer into memory that was freed before the launch.
extern "C" __global__ void store_to(float* p) {
    p[threadIdx.x] = 2.0f;
}

// Local (per-thread stack) array indexed out of its bounds: idx = 1 << 20 lands far outside the
// thread's local window.
extern "C" __global__ void local_oob(const int* idx, int* out) {
    int arr[8];
    int t = threadIdx.x;
    for (int k = 0; k < 8; k++) arr[k] = t + k;
    arr[idx[t]] = 5;
    out[t] = arr[(t + 3) & 7];
}

// __syncwarp with a mask that leaves out the calling lane (lane 0 passes 0xfffffffe).
extern "C" __global__ void syncwarp_bad_mask(int* out) {
    int lane = threadIdx.x;
    __syncwarp(lane == 0 ? 0xfffffffeu : 0xffffffffu);
    out[lane] = lane;
}

// Every block writes the same output element: which value survives depends on block order.
extern "C" __global__ void global_same_slot(const float* in, float* out) {
    if (threadIdx.x == 0) out[0] = in[blockIdx.x];
}

// In place across blocks: block b reads element b+1, which block b+1 overwrites.
extern "C" __global__ void global_shift_in_place(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i + 1 < n ? x[i + 1] : 0.0f;
    __syncthreads();
    if (i + 1 < n) x[i] = v;
}

// The same with atomics: no race.
extern "C" __global__ void global_atomic_slot(const float* in, float* out) {
    if (threadIdx.x == 0) atomicAdd(out, in[blockIdx.x]);
}
