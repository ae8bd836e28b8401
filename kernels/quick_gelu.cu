// quick_gelu.cu — CLIP's QuickGELU on f16: out = x·sigmoid(1.702·x), f32 math.
// Grid-stride (block 256, grid min(ceil(n / 2048), 4096)); may run in place.
#include "common.cuh"

using namespace lav2;

namespace {
struct QuickGelu {
    LAV2_DEV float operator()(float x) const { return x / (1.0f + expf(-1.702f * x)); }
};

}  // namespace

extern "C" __global__ void quick_gelu_f16(const __half* x, __half* out, int n) { unary(x, out, n, QuickGelu()); }
