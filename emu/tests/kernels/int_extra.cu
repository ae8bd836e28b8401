// Integer instructions outside the core set, in their own module so that a parser gap here does
// not take the core integer tests down with it: the prmt modes.
#include <cstdint>

// out: [11][n]: [0..4) unused, prmt.b32.{f4e, b4e, rc8, ecl, ecr, rc16} (a = x, b = y, c = z)
extern "C" __global__ void int_extra(const unsigned* a, const unsigned* b, const unsigned* c,
                                     unsigned* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned x = a[i], y = b[i], z = c[i];
    unsigned* o = out + i;
    asm("prmt.b32.f4e %0, %1, %2, %3;" : "=r"(o[4 * n]) : "r"(x), "r"(y), "r"(z));
    asm("prmt.b32.b4e %0, %1, %2, %3;" : "=r"(o[5 * n]) : "r"(x), "r"(y), "r"(z));
    asm("prmt.b32.rc8 %0, %1, %2, %3;" : "=r"(o[6 * n]) : "r"(x), "r"(y), "r"(z));
    asm("prmt.b32.ecl %0, %1, %2, %3;" : "=r"(o[7 * n]) : "r"(x), "r"(y), "r"(z));
    asm("prmt.b32.ecr %0, %1, %2, %3;" : "=r"(o[8 * n]) : "r"(x), "r"(y), "r"(z));
    asm("prmt.b32.rc16 %0, %1, %2, %3;" : "=r"(o[9 * n]) : "r"(x), "r"(y), "r"(z));
}
