// Warp order: lane 0 of every warp takes `rounds` tickets from a global counter, doing some
// work in between; order[ticket] = warp id. The order the emulator runs ready warps in (seeded)
// shows directly.
extern "C" __global__ void warp_order(unsigned* counter, unsigned* order, unsigned* last, int rounds) {
    unsigned warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    unsigned lane = threadIdx.x % 32;
    unsigned acc = warp;
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < (int)(warp % 5) + 1; k++) acc = acc * 1664525u + 1013904223u;
        if (lane == 0) {
            unsigned tk = atomicAdd(counter, 1u);
            order[tk] = warp;
            atomicExch(last, warp);  // the last writer wins
        }
        __syncwarp();
    }
    if (acc == 0x12345678u) order[0] = 0xffffffffu;  // keep acc alive
}
