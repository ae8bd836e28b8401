// Floating point: cvt with every rounding mode, f32 add/mul/fma with .rn/.rz/.rm/.rp, correctly
// rounded div/sqrt/rcp, f16/f16x2 arithmetic, min/max NaN rules, setp (ordered and unordered),
// and the .approx functions.
#include <cuda_fp16.h>
#include <cstdint>

#define CVT4(OUT, I, N, DT, ST, DC, SC, X)                                              \
    asm("cvt.rn." DT "." ST " %0, %1;" : "=" DC(OUT[0 * N + I]) : SC(X));             \
    asm("cvt.rz." DT "." ST " %0, %1;" : "=" DC(OUT[1 * N + I]) : SC(X));             \
    asm("cvt.rm." DT "." ST " %0, %1;" : "=" DC(OUT[2 * N + I]) : SC(X));             \
    asm("cvt.rp." DT "." ST " %0, %1;" : "=" DC(OUT[3 * N + I]) : SC(X));

// f32 -> f16 (as raw bits), 4 modes. out: [4][n]
extern "C" __global__ void cvt_f32_f16(const float* in, unsigned short* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = in[i];
    unsigned short r0, r1, r2, r3;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r0) : "f"(x));
    asm("cvt.rz.f16.f32 %0, %1;" : "=h"(r1) : "f"(x));
    asm("cvt.rm.f16.f32 %0, %1;" : "=h"(r2) : "f"(x));
    asm("cvt.rp.f16.f32 %0, %1;" : "=h"(r3) : "f"(x));
    out[i] = r0; out[n + i] = r1; out[2 * n + i] = r2; out[3 * n + i] = r3;
}

// f16 -> f32 (exact) and f16 -> f64. out32: [n], out64: [n]
extern "C" __global__ void cvt_f16_up(const unsigned short* in, float* out32, double* out64, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned short h = in[i];
    float f; double d;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    asm("cvt.f64.f16 %0, %1;" : "=d"(d) : "h"(h));
    out32[i] = f; out64[i] = d;
}

// f64 -> f32, 4 modes. out: [4][n]
extern "C" __global__ void cvt_f64_f32(const double* in, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    double x = in[i];
    CVT4(out, i, n, "f32", "f64", "f", "d", x)
}

// f32 -> s32 / u32 / s64 with rni/rzi/rmi/rpi (clamped, NaN -> 0). out: [12][n] as 32-bit words
// (s64 results as their low word and high word: s64 rows are [8..12) low, [12..16) high).
extern "C" __global__ void cvt_f32_int(const float* in, int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = in[i];
    int s0, s1, s2, s3; unsigned u0, u1, u2, u3; long long l0, l1, l2, l3;
    asm("cvt.rni.s32.f32 %0, %1;" : "=r"(s0) : "f"(x));
    asm("cvt.rzi.s32.f32 %0, %1;" : "=r"(s1) : "f"(x));
    asm("cvt.rmi.s32.f32 %0, %1;" : "=r"(s2) : "f"(x));
    asm("cvt.rpi.s32.f32 %0, %1;" : "=r"(s3) : "f"(x));
    asm("cvt.rni.u32.f32 %0, %1;" : "=r"(u0) : "f"(x));
    asm("cvt.rzi.u32.f32 %0, %1;" : "=r"(u1) : "f"(x));
    asm("cvt.rmi.u32.f32 %0, %1;" : "=r"(u2) : "f"(x));
    asm("cvt.rpi.u32.f32 %0, %1;" : "=r"(u3) : "f"(x));
    asm("cvt.rni.s64.f32 %0, %1;" : "=l"(l0) : "f"(x));
    asm("cvt.rzi.s64.f32 %0, %1;" : "=l"(l1) : "f"(x));
    asm("cvt.rmi.s64.f32 %0, %1;" : "=l"(l2) : "f"(x));
    asm("cvt.rpi.s64.f32 %0, %1;" : "=l"(l3) : "f"(x));
    int r[16] = {s0, s1, s2, s3, (int)u0, (int)u1, (int)u2, (int)u3,
                 (int)l0, (int)l1, (int)l2, (int)l3,
                 (int)(l0 >> 32), (int)(l1 >> 32), (int)(l2 >> 32), (int)(l3 >> 32)};
#pragma unroll
    for (int k = 0; k < 16; k++) out[k * n + i] = r[k];
}

// f32 -> integral f32 (cvt.rni.f32.f32 etc.). out: [4][n]
extern "C" __global__ void cvt_f32_integral(const float* in, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = in[i];
    asm("cvt.rni.f32.f32 %0, %1;" : "=f"(out[i]) : "f"(x));
    asm("cvt.rzi.f32.f32 %0, %1;" : "=f"(out[n + i]) : "f"(x));
    asm("cvt.rmi.f32.f32 %0, %1;" : "=f"(out[2 * n + i]) : "f"(x));
    asm("cvt.rpi.f32.f32 %0, %1;" : "=f"(out[3 * n + i]) : "f"(x));
}

// s32 / u32 / s64 -> f32, 4 modes. out: [12][n]
extern "C" __global__ void cvt_int_f32(const int* in32, const long long* in64, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int s = in32[i];
    unsigned u = (unsigned)s;
    long long l = in64[i];
    CVT4(out, i, n, "f32", "s32", "f", "r", s)
    float* o2 = out + 4 * n;
    CVT4(o2, i, n, "f32", "u32", "f", "r", u)
    float* o3 = out + 8 * n;
    CVT4(o3, i, n, "f32", "s64", "f", "l", l)
}

// add/sub/mul/fma f32 with 4 rounding modes. out: [16][n]
extern "C" __global__ void f32_arith(const float* a, const float* b, const float* c, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = a[i], y = b[i], z = c[i];
    float* o = out + i;
    asm("add.rn.f32 %0, %1, %2;" : "=f"(o[0 * n]) : "f"(x), "f"(y));
    asm("add.rz.f32 %0, %1, %2;" : "=f"(o[1 * n]) : "f"(x), "f"(y));
    asm("add.rm.f32 %0, %1, %2;" : "=f"(o[2 * n]) : "f"(x), "f"(y));
    asm("add.rp.f32 %0, %1, %2;" : "=f"(o[3 * n]) : "f"(x), "f"(y));
    asm("sub.rn.f32 %0, %1, %2;" : "=f"(o[4 * n]) : "f"(x), "f"(y));
    asm("sub.rz.f32 %0, %1, %2;" : "=f"(o[5 * n]) : "f"(x), "f"(y));
    asm("sub.rm.f32 %0, %1, %2;" : "=f"(o[6 * n]) : "f"(x), "f"(y));
    asm("sub.rp.f32 %0, %1, %2;" : "=f"(o[7 * n]) : "f"(x), "f"(y));
    asm("mul.rn.f32 %0, %1, %2;" : "=f"(o[8 * n]) : "f"(x), "f"(y));
    asm("mul.rz.f32 %0, %1, %2;" : "=f"(o[9 * n]) : "f"(x), "f"(y));
    asm("mul.rm.f32 %0, %1, %2;" : "=f"(o[10 * n]) : "f"(x), "f"(y));
    asm("mul.rp.f32 %0, %1, %2;" : "=f"(o[11 * n]) : "f"(x), "f"(y));
    asm("fma.rn.f32 %0, %1, %2, %3;" : "=f"(o[12 * n]) : "f"(x), "f"(y), "f"(z));
    asm("fma.rz.f32 %0, %1, %2, %3;" : "=f"(o[13 * n]) : "f"(x), "f"(y), "f"(z));
    asm("fma.rm.f32 %0, %1, %2, %3;" : "=f"(o[14 * n]) : "f"(x), "f"(y), "f"(z));
    asm("fma.rp.f32 %0, %1, %2, %3;" : "=f"(o[15 * n]) : "f"(x), "f"(y), "f"(z));
}

// f64 fma / add / mul with 4 modes. out: [12][n]
extern "C" __global__ void f64_arith(const double* a, const double* b, const double* c, double* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    double x = a[i], y = b[i], z = c[i];
    double* o = out + i;
    asm("add.rn.f64 %0, %1, %2;" : "=d"(o[0 * n]) : "d"(x), "d"(y));
    asm("add.rz.f64 %0, %1, %2;" : "=d"(o[1 * n]) : "d"(x), "d"(y));
    asm("add.rm.f64 %0, %1, %2;" : "=d"(o[2 * n]) : "d"(x), "d"(y));
    asm("add.rp.f64 %0, %1, %2;" : "=d"(o[3 * n]) : "d"(x), "d"(y));
    asm("mul.rn.f64 %0, %1, %2;" : "=d"(o[4 * n]) : "d"(x), "d"(y));
    asm("mul.rz.f64 %0, %1, %2;" : "=d"(o[5 * n]) : "d"(x), "d"(y));
    asm("mul.rm.f64 %0, %1, %2;" : "=d"(o[6 * n]) : "d"(x), "d"(y));
    asm("mul.rp.f64 %0, %1, %2;" : "=d"(o[7 * n]) : "d"(x), "d"(y));
    asm("fma.rn.f64 %0, %1, %2, %3;" : "=d"(o[8 * n]) : "d"(x), "d"(y), "d"(z));
    asm("fma.rz.f64 %0, %1, %2, %3;" : "=d"(o[9 * n]) : "d"(x), "d"(y), "d"(z));
    asm("fma.rm.f64 %0, %1, %2, %3;" : "=d"(o[10 * n]) : "d"(x), "d"(y), "d"(z));
    asm("fma.rp.f64 %0, %1, %2, %3;" : "=d"(o[11 * n]) : "d"(x), "d"(y), "d"(z));
}

// Correctly rounded f32 div/sqrt/rcp (IEEE, .rn) and the CUDA operators that compile to them.
// out: [6][n]: div.rn, sqrt.rn, rcp.rn, a / b (C++), sqrtf(a), div.full (approx, checked apart)
extern "C" __global__ void f32_div_sqrt(const float* a, const float* b, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = a[i], y = b[i];
    asm("div.rn.f32 %0, %1, %2;" : "=f"(out[i]) : "f"(x), "f"(y));
    asm("sqrt.rn.f32 %0, %1;" : "=f"(out[n + i]) : "f"(x));
    asm("rcp.rn.f32 %0, %1;" : "=f"(out[2 * n + i]) : "f"(x));
    out[3 * n + i] = x / y;
    out[4 * n + i] = sqrtf(x);
    asm("div.full.f32 %0, %1, %2;" : "=f"(out[5 * n + i]) : "f"(x), "f"(y));
}

// f16 and f16x2 arithmetic. a, b, c: [n] half2. out: [10][n] half2:
// __hadd2, __hsub2, __hmul2, __hfma2, __hmin2, __hmax2, scalar __hadd (.x), __hmul (.x),
// __hfma (.x) (scalars packed with 0 in .y), __hadd2_rn
extern "C" __global__ void half_ops(const __half2* a, const __half2* b, const __half2* c, __half2* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    __half2 x = a[i], y = b[i], z = c[i];
    __half zero = __ushort_as_half(0);
    out[0 * n + i] = __hadd2(x, y);
    out[1 * n + i] = __hsub2(x, y);
    out[2 * n + i] = __hmul2(x, y);
    out[3 * n + i] = __hfma2(x, y, z);
    out[4 * n + i] = __hmin2(x, y);
    out[5 * n + i] = __hmax2(x, y);
    out[6 * n + i] = __halves2half2(__hadd(__low2half(x), __low2half(y)), zero);
    out[7 * n + i] = __halves2half2(__hmul(__low2half(x), __low2half(y)), zero);
    out[8 * n + i] = __halves2half2(__hfma(__low2half(x), __low2half(y), __low2half(z)), zero);
    out[9 * n + i] = __hadd2_rn(x, y);
}

// min/max f32: fminf/fmaxf (min.f32: a NaN operand yields the other) both operand orders, abs,
// neg, copysign. out: [7][n] (min.NaN/max.NaN are in float_extra.cu)
extern "C" __global__ void f32_minmax(const float* a, const float* b, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = a[i], y = b[i];
    out[i] = fminf(x, y);
    out[n + i] = fmaxf(x, y);
    out[2 * n + i] = fminf(y, x);  // operand order swapped
    out[3 * n + i] = fmaxf(y, x);
    asm("abs.f32 %0, %1;" : "=f"(out[4 * n + i]) : "f"(x));
    asm("neg.f32 %0, %1;" : "=f"(out[5 * n + i]) : "f"(x));
    asm("copysign.f32 %0, %1, %2;" : "=f"(out[6 * n + i]) : "f"(y), "f"(x));
}

// setp.f32 with every comparison, one bit each. out: [n]
#define SETP(CMP, BIT)                                                              \
    asm("{ .reg .pred p; setp." CMP ".f32 p, %1, %2; selp.u32 %0, 1, 0, p; }"        \
        : "=r"(t) : "f"(x), "f"(y));                                                 \
    r |= t << BIT;
extern "C" __global__ void f32_setp(const float* a, const float* b, unsigned* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = a[i], y = b[i];
    unsigned r = 0, t;
    SETP("eq", 0) SETP("ne", 1) SETP("lt", 2) SETP("le", 3) SETP("gt", 4) SETP("ge", 5)
    SETP("equ", 6) SETP("neu", 7) SETP("ltu", 8) SETP("leu", 9) SETP("gtu", 10) SETP("geu", 11)
    SETP("num", 12) SETP("nan", 13)
    // And from C++: isnan and an unordered compare the compiler emits itself.
    r |= (unsigned)(isnan(x)) << 14;
    r |= (unsigned)(!(x >= y)) << 15;
    out[i] = r;
}

// .approx functions. out: [8][n]: ex2, lg2, rsqrt, rcp, sqrt, sin, cos, tanh
extern "C" __global__ void f32_approx(const float* a, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = a[i];
    asm("ex2.approx.f32 %0, %1;" : "=f"(out[i]) : "f"(x));
    asm("lg2.approx.f32 %0, %1;" : "=f"(out[n + i]) : "f"(x));
    asm("rsqrt.approx.f32 %0, %1;" : "=f"(out[2 * n + i]) : "f"(x));
    asm("rcp.approx.f32 %0, %1;" : "=f"(out[3 * n + i]) : "f"(x));
    asm("sqrt.approx.f32 %0, %1;" : "=f"(out[4 * n + i]) : "f"(x));
    asm("sin.approx.f32 %0, %1;" : "=f"(out[5 * n + i]) : "f"(x));
    asm("cos.approx.f32 %0, %1;" : "=f"(out[6 * n + i]) : "f"(x));
    asm("tanh.approx.f32 %0, %1;" : "=f"(out[7 * n + i]) : "f"(x));
}
