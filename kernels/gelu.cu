// gelu.cu — exact GELU on f16: out = 0.5·x·(1 + erf(x/√2)), f32 math (the resampler's blocks).
// Grid-stride (block 256, grid min(ceil(n / 2048), 4096)); may run in place.
#include "common.cuh"

using namespace lav2;

namespace {
struct Gelu {
    LAV2_DEV float operator()(float x) const { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
};
}  // namespace

extern "C" __global__ void gelu_f16(const __half* x, __half* out, int n) { unary(x, out, n, Gelu()); }
