// Float instructions outside the core set, in their own module: min/max with .NaN (sm_80).
// out: [2][n]: min.NaN.f32, max.NaN.f32
extern "C" __global__ void minmax_nan(const float* a, const float* b, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = a[i], y = b[i];
    asm("min.NaN.f32 %0, %1, %2;" : "=f"(out[i]) : "f"(x), "f"(y));
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(out[n + i]) : "f"(x), "f"(y));
}
