/* A plain C program against the CUDA driver API, run on the cuda-emu cdylib:
 *   driver_smoke PATH/TO/libcuda_emu.so
 * It dlopens the library, then init -> context -> alloc -> copy in -> memset -> copy back ->
 * compare -> free. Prints "driver_smoke: ok" and returns 0 on success. Declares the few types
 * it needs itself (no cuda.h on the machine). */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef uint64_t CUdeviceptr;
typedef void *CUcontext;

#define N 4096

static void *lib;

static void *sym(const char *name) {
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "driver_smoke: missing symbol %s\n", name);
    }
    return p;
}

static CUresult (*p_cuGetErrorName)(CUresult, const char **);

static int check(CUresult r, CUresult want, const char *what) {
    if (r == want) {
        return 1;
    }
    const char *name = "?";
    if (p_cuGetErrorName) {
        p_cuGetErrorName(r, &name);
    }
    fprintf(stderr, "driver_smoke: %s returned %d (%s), expected %d\n", what, r, name, want);
    return 0;
}

#define CHECK(call) do { if (!check((call), 0, #call)) return 1; } while (0)
#define LOAD(name, args) CUresult (*name) args = (CUresult (*) args)sym(#name); if (!name) return 1

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: driver_smoke LIBRARY\n");
        return 2;
    }
    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "driver_smoke: dlopen failed: %s\n", dlerror());
        return 1;
    }
    p_cuGetErrorName = (CUresult (*)(CUresult, const char **))sym("cuGetErrorName");
    LOAD(cuInit, (unsigned));
    LOAD(cuDriverGetVersion, (int *));
    LOAD(cuDeviceGetCount, (int *));
    LOAD(cuDeviceGet, (CUdevice *, int));
    LOAD(cuDeviceGetName, (char *, int, CUdevice));
    LOAD(cuCtxCreate_v2, (CUcontext *, unsigned, CUdevice));
    LOAD(cuCtxDestroy_v2, (CUcontext));
    LOAD(cuCtxSynchronize, (void));
    LOAD(cuMemAlloc_v2, (CUdeviceptr *, size_t));
    LOAD(cuMemFree_v2, (CUdeviceptr));
    LOAD(cuMemcpyHtoD_v2, (CUdeviceptr, const void *, size_t));
    LOAD(cuMemcpyDtoH_v2, (void *, CUdeviceptr, size_t));
    LOAD(cuMemcpyDtoD_v2, (CUdeviceptr, CUdeviceptr, size_t));
    LOAD(cuMemsetD8_v2, (CUdeviceptr, unsigned char, size_t));
    LOAD(cuMemsetD32_v2, (CUdeviceptr, unsigned, size_t));
    LOAD(cuMemGetInfo_v2, (size_t *, size_t *));

    /* Before cuInit: CUDA_ERROR_NOT_INITIALIZED (3). */
    int count = -1;
    if (!check(cuDeviceGetCount(&count), 3, "cuDeviceGetCount before cuInit")) return 1;
    int version = 0;
    CHECK(cuDriverGetVersion(&version));
    CHECK(cuInit(0));
    CHECK(cuDeviceGetCount(&count));
    if (count != 1) {
        fprintf(stderr, "driver_smoke: %d devices\n", count);
        return 1;
    }
    CUdevice dev;
    CHECK(cuDeviceGet(&dev, 0));
    char name[128];
    CHECK(cuDeviceGetName(name, sizeof name, dev));
    CUcontext ctx;
    CHECK(cuCtxCreate_v2(&ctx, 0, dev));

    static unsigned char host[N], back[N];
    for (int i = 0; i < N; i++) {
        host[i] = (unsigned char)(i * 31 + 7);
    }
    CUdeviceptr a, b;
    CHECK(cuMemAlloc_v2(&a, N));
    CHECK(cuMemAlloc_v2(&b, N));
    CHECK(cuMemcpyHtoD_v2(a, host, N));
    CHECK(cuMemsetD8_v2(a + 100, 0x5A, 50));
    CHECK(cuMemcpyDtoD_v2(b, a, N));
    CHECK(cuMemsetD32_v2(b + 1024, 0x01020304u, 4));
    CHECK(cuCtxSynchronize());
    CHECK(cuMemcpyDtoH_v2(back, b, N));
    memset(host + 100, 0x5A, 50);
    for (int i = 0; i < 4; i++) {
        host[1024 + 4 * i + 0] = 4;
        host[1024 + 4 * i + 1] = 3;
        host[1024 + 4 * i + 2] = 2;
        host[1024 + 4 * i + 3] = 1;
    }
    for (int i = 0; i < N; i++) {
        if (host[i] != back[i]) {
            fprintf(stderr, "driver_smoke: byte %d is %d, expected %d\n", i, back[i], host[i]);
            return 1;
        }
    }
    size_t free_b, total_b;
    CHECK(cuMemGetInfo_v2(&free_b, &total_b));
    CHECK(cuMemFree_v2(a));
    CHECK(cuMemFree_v2(b));
    /* A double free is an error, not a crash. */
    if (!check(cuMemFree_v2(a), 1, "double cuMemFree_v2")) return 1;
    CHECK(cuCtxDestroy_v2(ctx));
    printf("driver_smoke: ok (%s, driver %d, %zu of %zu bytes free)\n", name, version, free_b,
           total_b);
    return 0;
}
