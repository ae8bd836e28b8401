// mma.sync m16n8k16 (f32 and f16 accumulators) and ldmatrix, with fragments loaded per the PTX ISA
// fragment layouts:
//   groupID = laneid >> 2, tig = laneid % 4
//   A (16x16, .row, 4 x .f16x2 = a0..a7): row = groupID for a0,a1,a4,a5, groupID+8 for a2,a3,a6,a7;
//       col = tig*2 + (i & 1), +8 for a4..a7
//   B (16x8, .col, 2 x .f16x2 = b0..b3): k = tig*2 + (i & 1), +8 for b2,b3; n = groupID
//   C/D f32 (4 x .f32 = c0..c3): row = groupID for c0,c1, groupID+8 for c2,c3; col = tig*2 + (i & 1)
//   C/D f16 (2 x .f16x2): the same four elements, c0,c1 in the first register
#include <cuda_fp16.h>
#include <cstdint>

__device__ __forceinline__ uint32_t pack2(unsigned short lo, unsigned short hi) {
    return (uint32_t)lo | ((uint32_t)hi << 16);
}

// One 16x8 tile per warp. A: [tiles][16][16] f16 (row-major), B: [tiles][16][8] f16 (k-major,
// B[k][n]), C/D: [tiles][16][8] f32 row-major.
extern "C" __global__ void mma_f32_f16(const unsigned short* A, const unsigned short* B,
                                       const float* C, float* D) {
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    int g = lane >> 2, t = lane & 3;
    const unsigned short* a = A + warp * 256;
    const unsigned short* b = B + warp * 128;
    const float* c = C + warp * 128;
    float* d = D + warp * 128;
    uint32_t ra0 = pack2(a[g * 16 + t * 2], a[g * 16 + t * 2 + 1]);
    uint32_t ra1 = pack2(a[(g + 8) * 16 + t * 2], a[(g + 8) * 16 + t * 2 + 1]);
    uint32_t ra2 = pack2(a[g * 16 + t * 2 + 8], a[g * 16 + t * 2 + 9]);
    uint32_t ra3 = pack2(a[(g + 8) * 16 + t * 2 + 8], a[(g + 8) * 16 + t * 2 + 9]);
    uint32_t rb0 = pack2(b[(t * 2) * 8 + g], b[(t * 2 + 1) * 8 + g]);
    uint32_t rb1 = pack2(b[(t * 2 + 8) * 8 + g], b[(t * 2 + 9) * 8 + g]);
    float c0 = c[g * 8 + t * 2], c1 = c[g * 8 + t * 2 + 1];
    float c2 = c[(g + 8) * 8 + t * 2], c3 = c[(g + 8) * 8 + t * 2 + 1];
    float d0, d1, d2, d3;
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};\n"
        : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
        : "r"(ra0), "r"(ra1), "r"(ra2), "r"(ra3), "r"(rb0), "r"(rb1), "f"(c0), "f"(c1), "f"(c2),
          "f"(c3));
    d[g * 8 + t * 2] = d0;
    d[g * 8 + t * 2 + 1] = d1;
    d[(g + 8) * 8 + t * 2] = d2;
    d[(g + 8) * 8 + t * 2 + 1] = d3;
}

// The same with f16 C and D: C/D [tiles][16][8] f16.
extern "C" __global__ void mma_f16_f16(const unsigned short* A, const unsigned short* B,
                                       const unsigned short* C, unsigned short* D) {
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    int g = lane >> 2, t = lane & 3;
    const unsigned short* a = A + warp * 256;
    const unsigned short* b = B + warp * 128;
    const unsigned short* c = C + warp * 128;
    unsigned short* d = D + warp * 128;
    uint32_t ra0 = pack2(a[g * 16 + t * 2], a[g * 16 + t * 2 + 1]);
    uint32_t ra1 = pack2(a[(g + 8) * 16 + t * 2], a[(g + 8) * 16 + t * 2 + 1]);
    uint32_t ra2 = pack2(a[g * 16 + t * 2 + 8], a[g * 16 + t * 2 + 9]);
    uint32_t ra3 = pack2(a[(g + 8) * 16 + t * 2 + 8], a[(g + 8) * 16 + t * 2 + 9]);
    uint32_t rb0 = pack2(b[(t * 2) * 8 + g], b[(t * 2 + 1) * 8 + g]);
    uint32_t rb1 = pack2(b[(t * 2 + 8) * 8 + g], b[(t * 2 + 9) * 8 + g]);
    uint32_t rc0 = pack2(c[g * 8 + t * 2], c[g * 8 + t * 2 + 1]);
    uint32_t rc1 = pack2(c[(g + 8) * 8 + t * 2], c[(g + 8) * 8 + t * 2 + 1]);
    uint32_t rd0, rd1;
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0,%1}, {%2,%3,%4,%5}, {%6,%7}, "
        "{%8,%9};\n"
        : "=r"(rd0), "=r"(rd1)
        : "r"(ra0), "r"(ra1), "r"(ra2), "r"(ra3), "r"(rb0), "r"(rb1), "r"(rc0), "r"(rc1));
    d[g * 8 + t * 2] = (unsigned short)(rd0 & 0xffff);
    d[g * 8 + t * 2 + 1] = (unsigned short)(rd0 >> 16);
    d[(g + 8) * 8 + t * 2] = (unsigned short)(rd1 & 0xffff);
    d[(g + 8) * 8 + t * 2 + 1] = (unsigned short)(rd1 >> 16);
}

// ldmatrix: 4 matrices of 8x8 b16 live in shared memory with a row stride of 16 elements (32
// bytes), the rows of matrix m at sm[(m*8 + perm(r))*16 + 8 ...] with perm(r) = (3r+1) % 8, so the
// row addresses each lane supplies are neither contiguous nor in order. Lane l supplies the address
// of row l%8 of matrix l/8. out: [6 variants][32 lanes][4 regs]: x1, x2, x4, x1.trans, x2.trans,
// x4.trans (registers a variant does not produce are left alone).
extern "C" __global__ void ldmatrix_all(const unsigned short* src, unsigned* out) {
    __shared__ __align__(16) unsigned short sm[32 * 16];
    int lane = threadIdx.x;
    for (int i = lane; i < 32 * 16; i += 32) sm[i] = src[i];
    __syncwarp();
    int m = lane / 8, r = lane % 8;
    int row = m * 8 + (3 * r + 1) % 8;
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(&sm[row * 16 + 8]);
    uint32_t x0, x1, x2, x3;
    unsigned* o = out + lane * 4;
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(x0) : "r"(addr));
    o[0] = x0;
    o += 128;
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(x0), "=r"(x1) : "r"(addr));
    o[0] = x0; o[1] = x1;
    o += 128;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(x0), "=r"(x1), "=r"(x2), "=r"(x3) : "r"(addr));
    o[0] = x0; o[1] = x1; o[2] = x2; o[3] = x3;
    o += 128;
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(x0) : "r"(addr));
    o[0] = x0;
    o += 128;
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(x0), "=r"(x1) : "r"(addr));
    o[0] = x0; o[1] = x1;
    o += 128;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(x0), "=r"(x1), "=r"(x2), "=r"(x3) : "r"(addr));
    o[0] = x0; o[1] = x1; o[2] = x2; o[3] = x3;
}

// ldmatrix feeding mma, as real GEMM kernels do: A 16x16 row-major and B^T (8x16, i.e. B stored
// n-major, "col") staged in shared memory, A fragments via ldmatrix.x4, B via ldmatrix.x2.
extern "C" __global__ void ldmatrix_mma(const unsigned short* A, const unsigned short* Bt,
                                        float* D) {
    __shared__ __align__(16) unsigned short sa[16 * 16];
    __shared__ __align__(16) unsigned short sb[8 * 16];
    int lane = threadIdx.x;
    for (int i = lane; i < 256; i += 32) sa[i] = A[i];
    for (int i = lane; i < 128; i += 32) sb[i] = Bt[i];
    __syncwarp();
    // x4 over A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15)
    int mi = lane / 8, r = lane % 8;
    int arow = r + (mi & 1) * 8, acol = (mi >> 1) * 8;
    uint32_t aaddr = (uint32_t)__cvta_generic_to_shared(&sa[arow * 16 + acol]);
    // x2 over B^T: matrices (n 0-7, k 0-7), (n 0-7, k 8-15); lanes 16-31 addresses are ignored
    int bm = (lane / 8) & 1;
    uint32_t baddr = (uint32_t)__cvta_generic_to_shared(&sb[r * 16 + bm * 8]);
    uint32_t a0, a1, a2, a3, b0, b1;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3) : "r"(aaddr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(b0), "=r"(b1) : "r"(baddr));
    float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    int g = lane >> 2, t = lane & 3;
    D[g * 8 + t * 2] = d0;
    D[g * 8 + t * 2 + 1] = d1;
    D[(g + 8) * 8 + t * 2] = d2;
    D[(g + 8) * 8 + t * 2 + 1] = d3;
}
