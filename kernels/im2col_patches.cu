// im2col_patches.cu — pixels [3, S, S] f32 (normalized image) -> patches [g*g, 3*p*p] f16, g = S / p,
// patch index gy*g + gx, column order (c, ky, kx): CLIP's patch convolution (stride p, no bias) is then
// a GEMM with the conv weight [width, 3, p, p] viewed as [width, 3*p*p].
#include "common.cuh"

using namespace lav2;

// grid-stride over g*g*3*p*p outputs; e.g. block 256, grid ceil(total / 256).
extern "C" __global__ void im2col_patches_f32_to_f16(const float* pixels, __half* patches, int S, int p) {
    const int g = S / p;
    const int cols = 3 * p * p;
    const long long total = (long long)g * g * cols;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int patch = (int)(i / cols), col = (int)(i % cols);
        const int gy = patch / g, gx = patch % g;
        const int c = col / (p * p), r = col % (p * p);
        const int ky = r / p, kx = r % p;
        patches[i] = __float2half_rn(pixels[((long long)c * S + gy * p + ky) * S + gx * p + kx]);
    }
}

