// Funnel shifts (shf), in their own module. out: [4][n]: shf.l.wrap, shf.r.wrap, shf.l.clamp,
// shf.r.clamp with a = x, b = y, c = z.
extern "C" __global__ void int_shf(const unsigned* a, const unsigned* b, const unsigned* c,
                                   unsigned* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned x = a[i], y = b[i], z = c[i];
    unsigned* o = out + i;
    asm("shf.l.wrap.b32 %0, %1, %2, %3;" : "=r"(o[0 * n]) : "r"(x), "r"(y), "r"(z));
    asm("shf.r.wrap.b32 %0, %1, %2, %3;" : "=r"(o[1 * n]) : "r"(x), "r"(y), "r"(z));
    asm("shf.l.clamp.b32 %0, %1, %2, %3;" : "=r"(o[2 * n]) : "r"(x), "r"(y), "r"(z));
    asm("shf.r.clamp.b32 %0, %1, %2, %3;" : "=r"(o[3 * n]) : "r"(x), "r"(y), "r"(z));
}
