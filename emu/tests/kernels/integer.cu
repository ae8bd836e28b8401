// Integer and logic instructions, each through inline PTX so the exact instruction and modifiers
// are the ones tested. a, b, c: [n] u32 inputs; A, B: [n] u64 inputs. out: [K][n] u32 (K = 48).
#include <cstdint>

#define OP2(K, INS)  asm(INS " %0, %1, %2;" : "=r"(o[(K) * n]) : "r"(x), "r"(y));
#define OP3(K, INS)  asm(INS " %0, %1, %2, %3;" : "=r"(o[(K) * n]) : "r"(x), "r"(y), "r"(z));

extern "C" __global__ void int32_ops(const unsigned* a, const unsigned* b, const unsigned* c,
                                     unsigned* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned x = a[i], y = b[i], z = c[i];
    unsigned* o = out + i;
    unsigned sh = z & 63;  // shift amounts 0..63: >= 32 must clamp
    OP2(0, "add.u32")
    OP2(1, "sub.u32")
    OP2(2, "mul.lo.u32")
    OP2(3, "mul.hi.u32")
    OP2(4, "mul.hi.s32")
    {
        unsigned long long w;
        asm("mul.wide.u32 %0, %1, %2;" : "=l"(w) : "r"(x), "r"(y));
        o[5 * n] = (unsigned)w; o[6 * n] = (unsigned)(w >> 32);
        asm("mul.wide.s32 %0, %1, %2;" : "=l"(w) : "r"(x), "r"(y));
        o[7 * n] = (unsigned)w; o[8 * n] = (unsigned)(w >> 32);
    }
    OP3(9, "mad.lo.u32")
    OP3(10, "mad.hi.s32")
    OP2(11, "div.u32")
    OP2(12, "rem.u32")
    OP2(13, "div.s32")
    OP2(14, "rem.s32")
    OP2(15, "min.s32")
    OP2(16, "max.s32")
    OP2(17, "min.u32")
    OP2(18, "max.u32")
    asm("shl.b32 %0, %1, %2;" : "=r"(o[19 * n]) : "r"(x), "r"(sh));
    asm("shr.u32 %0, %1, %2;" : "=r"(o[20 * n]) : "r"(x), "r"(sh));
    asm("shr.s32 %0, %1, %2;" : "=r"(o[21 * n]) : "r"(x), "r"(sh));
    OP2(22, "and.b32")
    OP2(23, "or.b32")
    OP2(24, "xor.b32")
    asm("not.b32 %0, %1;" : "=r"(o[25 * n]) : "r"(x));
    asm("{ .reg .pred p; setp.ne.u32 p, %3, 0; selp.b32 %0, %1, %2, p; }"
        : "=r"(o[26 * n]) : "r"(x), "r"(y), "r"(z & 1));
    OP3(27, "prmt.b32")
    // bfe: pos = y, len = z (the instruction uses their low 8 bits)
    OP3(28, "bfe.u32")
    OP3(29, "bfe.s32")
    {
        // bfi d, f = x, b = y, pos = z & 0xff, len = (z >> 8) & 0xff
        unsigned pos = z & 0xff, len = (z >> 8) & 0xff;
        asm("bfi.b32 %0, %1, %2, %3, %4;" : "=r"(o[30 * n]) : "r"(x), "r"(y), "r"(pos), "r"(len));
    }
    asm("popc.b32 %0, %1;" : "=r"(o[31 * n]) : "r"(x));
    asm("clz.b32 %0, %1;" : "=r"(o[32 * n]) : "r"(x));
    asm("brev.b32 %0, %1;" : "=r"(o[33 * n]) : "r"(x));
    {
        unsigned r = 0, t;
#define SETP(CMP, BIT)                                                                        \
        asm("{ .reg .pred p; setp." CMP " p, %1, %2; selp.u32 %0, 1, 0, p; }" : "=r"(t) : "r"(x), "r"(y)); \
        r |= t << BIT;
        SETP("eq.s32", 0) SETP("ne.s32", 1) SETP("lt.s32", 2) SETP("le.s32", 3) SETP("gt.s32", 4)
        SETP("ge.s32", 5) SETP("le.u32", 6) SETP("gt.u32", 7) SETP("ne.u32", 8) SETP("eq.u32", 9)
        SETP("lt.u32", 10) SETP("ge.u32", 11)
        // setp with a combining predicate: (x < y) and/or/xor (z odd)
        asm("{ .reg .pred q, p; setp.ne.u32 q, %3, 0; setp.lt.s32.and p, %1, %2, q; selp.u32 %0, 1, 0, p; }"
            : "=r"(t) : "r"(x), "r"(y), "r"(z & 1));
        r |= t << 12;
        asm("{ .reg .pred q, p; setp.ne.u32 q, %3, 0; setp.lt.s32.or p, %1, %2, q; selp.u32 %0, 1, 0, p; }"
            : "=r"(t) : "r"(x), "r"(y), "r"(z & 1));
        r |= t << 13;
        asm("{ .reg .pred q, p; setp.ne.u32 q, %3, 0; setp.lt.s32.xor p, %1, %2, !q; selp.u32 %0, 1, 0, p; }"
            : "=r"(t) : "r"(x), "r"(y), "r"(z & 1));
        r |= t << 14;
        o[34 * n] = r;
    }
    OP2(35, "add.sat.s32")
    OP2(36, "sub.sat.s32")
    asm("abs.s32 %0, %1;" : "=r"(o[37 * n]) : "r"(x));
    asm("neg.s32 %0, %1;" : "=r"(o[38 * n]) : "r"(x));
    asm("lop3.b32 %0, %1, %2, %3, 0x96;" : "=r"(o[39 * n]) : "r"(x), "r"(y), "r"(z));  // a ^ b ^ c
    asm("lop3.b32 %0, %1, %2, %3, 0xE8;" : "=r"(o[40 * n]) : "r"(x), "r"(y), "r"(z));  // majority
    OP2(41, "mul24.lo.u32")
    OP3(42, "mad24.lo.s32")
    asm("{ .reg .pred p; setp.lt.s32 p, %1, %2; selp.s32 %0, -1, 7, p; }" : "=r"(o[43 * n]) : "r"(x), "r"(y));
    asm("cnot.b32 %0, %1;" : "=r"(o[44 * n]) : "r"(x & 3));
    OP3(45, "mad.hi.u32")
    OP2(46, "mul.lo.s32")
    OP3(47, "sad.u32")
}

// 64-bit integer ops. out: [K][n] u64 (K = 16)
extern "C" __global__ void int64_ops(const unsigned long long* a, const unsigned long long* b,
                                     const unsigned* c, unsigned long long* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned long long x = a[i], y = b[i];
    unsigned sh = c[i] & 127;
    unsigned long long* o = out + i;
#define Q2(K, INS) asm(INS " %0, %1, %2;" : "=l"(o[(K) * n]) : "l"(x), "l"(y));
    Q2(0, "add.u64")
    Q2(1, "sub.u64")
    Q2(2, "mul.lo.u64")
    Q2(3, "mul.hi.u64")
    Q2(4, "mul.hi.s64")
    Q2(5, "div.u64")
    Q2(6, "rem.u64")
    Q2(7, "div.s64")
    Q2(8, "rem.s64")
    Q2(9, "min.s64")
    Q2(10, "max.u64")
    asm("shl.b64 %0, %1, %2;" : "=l"(o[11 * n]) : "l"(x), "r"(sh));
    asm("shr.u64 %0, %1, %2;" : "=l"(o[12 * n]) : "l"(x), "r"(sh));
    asm("shr.s64 %0, %1, %2;" : "=l"(o[13 * n]) : "l"(x), "r"(sh));
    {
        unsigned r;
        asm("popc.b64 %0, %1;" : "=r"(r) : "l"(x));
        unsigned r2;
        asm("clz.b64 %0, %1;" : "=r"(r2) : "l"(x));
        o[14 * n] = r | ((unsigned long long)r2 << 32);
    }
    asm("brev.b64 %0, %1;" : "=l"(o[15 * n]) : "l"(x));
}
