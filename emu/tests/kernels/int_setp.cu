// setp's unsigned comparison names lo/ls/hi/hs (what hand-written PTX uses; nvcc emits lt/le/..
// .u32), in their own module. out[n]: bits 0..3 = lo, ls, hi, hs of (a, b).
extern "C" __global__ void int_setp(const unsigned* a, const unsigned* b, unsigned* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned x = a[i], y = b[i];
    unsigned r = 0, t;
#define SETP(CMP, BIT)                                                                          \
    asm("{ .reg .pred p; setp." CMP " p, %1, %2; selp.u32 %0, 1, 0, p; }" : "=r"(t) : "r"(x), "r"(y)); \
    r |= t << BIT;
    SETP("lo.u32", 0) SETP("ls.u32", 1) SETP("hi.u32", 2) SETP("hs.u32", 3)
    out[i] = r;
}
