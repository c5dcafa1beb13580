// Run the avs-engine CUDA kernels' own source on the CPU (tests, no GPU needed).
//
// The .cu files are compiled by the host C++ compiler with this header forced in
// first (-include) and -DAVS_CPU_EMULATION. Every CUDA thread of a block is a
// fiber (ucontext) on one OS thread; the block's fibers run round-robin and
// switch only at the points where CUDA threads can wait for each other:
// __syncthreads (all live threads of the block), and the warp-collective
// instructions (__shfl_xor_sync, mma.sync, ldmatrix; all 32 lanes of the warp).
// Blocks run one after the other, so a kernel's `static` (= __shared__) arrays
// are one block's shared memory; they are not cleared between blocks (a read
// before a write sees the previous block's values, where a GPU has garbage;
// dynamic shared memory is refilled with NaN bytes per block). What this checks: the kernels' index maths,
// strides, tiling, barrier placement (a deadlock or a missing participant is an
// error, not a hang), the mma/ldmatrix fragment layouts as the PTX ISA defines
// them, every output written, against an independent reference. What it cannot:
// timing, asynchronous-copy hazards (cp.async is a plain copy here), memory
// ordering without barriers, and the GPU's own expf/exp2f rounding.
#pragma once
#ifndef AVS_CPU_EMULATION
#error "cuda_host.h is for the CPU emulation build (-DAVS_CPU_EMULATION)"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// -- CUDA keywords for the host compiler ----------------------------------------------------------
#ifdef __global__
#undef __global__
#endif
#define __global__
#ifdef __shared__
#undef __shared__
#endif
#define __shared__ static
#ifdef __constant__
#undef __constant__
#endif
#define __constant__
#ifdef __launch_bounds__
#undef __launch_bounds__
#endif
#define __launch_bounds__(...)
#ifndef __forceinline__
#define __forceinline__ inline
#endif

// CUDA's integer min/max, mixed signedness included (CUDA converts to unsigned, as here).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(unsigned a, int b) { return min(a, static_cast<unsigned>(b)); }
inline unsigned min(int a, unsigned b) { return min(static_cast<unsigned>(a), b); }
inline unsigned max(unsigned a, int b) { return max(a, static_cast<unsigned>(b)); }
inline unsigned max(int a, unsigned b) { return max(static_cast<unsigned>(a), b); }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }

namespace avs_emu {

struct Dim3 {
    unsigned x = 1, y = 1, z = 1;
};

constexpr int kWarpSize = 32;
constexpr size_t kStackBytes = 256 * 1024;  // per CUDA thread: its "registers" live here

struct Fiber {
    ucontext_t ctx;
    Dim3 tid;
    int linear = 0, warp = 0, lane = 0;
    bool done = false;
    int waiting = 0;  // 0 runnable, 1 block barrier, 2 warp barrier
    unsigned long long wait_gen = 0;
    std::unique_ptr<char[]> stack;
};

struct Warp {
    int size = 0, live = 0, arrived = 0;
    unsigned long long gen = 0;
    uint64_t slot[kWarpSize][8];  // lane exchange area of the warp-collective operations
};

struct Block {
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    int live = 0, arrived = 0;
    unsigned long long gen = 0;
    std::function<void()> body;
    std::vector<unsigned char> dynamic_smem;
    std::string error;
};

inline Dim3 g_block_idx, g_block_dim, g_grid_dim;
inline Block* g_block = nullptr;
inline Fiber* g_cur = nullptr;
inline ucontext_t g_scheduler;

inline void fail(const std::string& msg) {
    if (g_block && g_block->error.empty()) g_block->error = msg;
}

inline void yield() { swapcontext(&g_cur->ctx, &g_scheduler); }

inline void release_block_if_complete() {
    Block& b = *g_block;
    if (b.arrived > 0 && b.arrived == b.live) {
        b.arrived = 0;
        ++b.gen;
    }
}

inline void release_warp_if_complete(Warp& w) {
    if (w.arrived > 0 && w.arrived == w.live) {
        w.arrived = 0;
        ++w.gen;
    }
}

// __syncthreads: waits for every live thread of the block (threads that returned count as arrived).
inline void block_barrier() {
    Block& b = *g_block;
    const unsigned long long gen = b.gen;
    ++b.arrived;
    release_block_if_complete();
    if (b.gen == gen) {
        g_cur->waiting = 1;
        g_cur->wait_gen = gen;
        yield();
    }
}

// The rendezvous of a warp-collective instruction: all 32 lanes must take part.
inline void warp_barrier(const char* what) {
    Block& b = *g_block;
    Warp& w = b.warps[g_cur->warp];
    if (w.size != kWarpSize || w.live != kWarpSize) {
        fail(std::string(what) + ": warp of " + std::to_string(w.live) + " live lanes (needs all 32)");
        g_cur->waiting = 3;  // never resumed: the launch reports the error
        yield();
    }
    const unsigned long long gen = w.gen;
    ++w.arrived;
    release_warp_if_complete(w);
    if (w.gen == gen) {
        g_cur->waiting = 2;
        g_cur->wait_gen = gen;
        yield();
    }
}

inline void fiber_main() {
    g_block->body();
    Fiber& f = *g_cur;
    f.done = true;
    Block& b = *g_block;
    --b.live;
    release_block_if_complete();
    Warp& w = b.warps[f.warp];
    --w.live;
    release_warp_if_complete(w);
    // returning resumes uc_link: the scheduler
}

inline bool runnable(const Fiber& f) {
    if (f.done) return false;
    if (f.waiting == 1) return g_block->gen != f.wait_gen;
    if (f.waiting == 2) return g_block->warps[f.warp].gen != f.wait_gen;
    return f.waiting == 0;
}

// One block: every thread to completion. Returns "" or what went wrong.
inline std::string run_block(Block& b, int threads) {
    g_block = &b;
    b.fibers.resize(threads);
    b.live = threads;
    b.warps.assign((threads + kWarpSize - 1) / kWarpSize, Warp{});
    for (int i = 0; i < threads; ++i) {
        Fiber& f = b.fibers[i];
        f.linear = i;
        f.tid = {static_cast<unsigned>(i % g_block_dim.x), static_cast<unsigned>((i / g_block_dim.x) % g_block_dim.y),
                 static_cast<unsigned>(i / (g_block_dim.x * g_block_dim.y))};
        f.warp = i / kWarpSize;
        f.lane = i % kWarpSize;
        ++b.warps[f.warp].size;
        ++b.warps[f.warp].live;
        f.stack.reset(new char[kStackBytes]);
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.get();
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = &g_scheduler;
        makecontext(&f.ctx, fiber_main, 0);
    }
    for (;;) {
        bool any_left = false, progressed = false;
        for (Fiber& f : b.fibers) {
            if (f.done) continue;
            any_left = true;
            if (!b.error.empty()) break;
            if (!runnable(f)) continue;
            f.waiting = 0;
            g_cur = &f;
            swapcontext(&g_scheduler, &f.ctx);
            progressed = true;
        }
        if (!b.error.empty()) return b.error;
        if (!any_left) return "";
        if (!progressed) {
            int at_block = 0, at_warp = 0;
            for (const Fiber& f : b.fibers) {
                at_block += !f.done && f.waiting == 1;
                at_warp += !f.done && f.waiting == 2;
            }
            return "deadlock: " + std::to_string(at_block) + " threads wait at __syncthreads, " + std::to_string(at_warp) +
                   " at a warp-collective instruction, " + std::to_string(b.live) + " live";
        }
    }
}

// A whole launch. Returns "" or the first error (with the block it happened in).
inline std::string launch(const std::function<void()>& kernel, Dim3 grid, Dim3 block, size_t smem_bytes) {
    g_grid_dim = grid;
    g_block_dim = block;
    const int threads = static_cast<int>(block.x * block.y * block.z);
    if (threads < 1 || threads > 1024) return "block of " + std::to_string(threads) + " threads (1..1024)";
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                g_block_idx = {x, y, z};
                Block b;
                b.body = kernel;
                // fresh dynamic shared memory per block, filled with NaN bytes: a read before a write shows
                b.dynamic_smem.assign(smem_bytes, 0xff);
                std::string err = run_block(b, threads);
                g_block = nullptr;
                if (!err.empty())
                    return "block (" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + "): " + err;
            }
    return "";
}

inline unsigned char* dynamic_smem() { return g_block->dynamic_smem.data(); }

// -- warp-collective operations --------------------------------------------------------------------

template <typename T>
inline T shfl_xor(unsigned mask, T value, int lane_mask) {
    static_assert(sizeof(T) <= 8, "shuffle of a 32/64-bit value");
    if (mask != 0xffffffffu) fail("__shfl_xor_sync: only the full mask is emulated");
    Warp& w = g_block->warps[g_cur->warp];
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    w.slot[g_cur->lane][0] = bits;
    warp_barrier("__shfl_xor_sync");
    const int src = (g_cur->lane ^ lane_mask) & (kWarpSize - 1);
    T out;
    bits = w.slot[src][0];
    std::memcpy(&out, &bits, sizeof(T));
    warp_barrier("__shfl_xor_sync");  // every lane has read before the slots are reused
    return out;
}

inline float b16_to_float(uint16_t bits, bool bf16) {
    if (bf16) {
        const uint32_t u = static_cast<uint32_t>(bits) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
}

// element `half_index` (0: low 16 bits, the lower column) of a 32-bit register
inline float unpack(uint32_t reg, int half_index, bool bf16) {
    return b16_to_float(static_cast<uint16_t>(half_index ? reg >> 16 : reg & 0xffffu), bf16);
}

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: D = A B + D with the PTX ISA's fragments
// (g = lane / 4, q = lane % 4):
//   A 16x16: a0 = A[g][2q, 2q+1], a1 = A[g+8][2q, 2q+1], a2 = A[g][2q+8, 2q+9], a3 = A[g+8][2q+8, 2q+9]
//   B 16x8:  b0 = B[2q, 2q+1][g], b1 = B[2q+8, 2q+9][g]
//   C/D:     d0, d1 = D[g][2q, 2q+1], d2, d3 = D[g+8][2q, 2q+1]
inline void mma_m16n8k16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1, bool bf16) {
    Warp& w = g_block->warps[g_cur->warp];
    uint64_t* mine = w.slot[g_cur->lane];
    for (int i = 0; i < 4; ++i) mine[i] = a[i];
    mine[4] = b0;
    mine[5] = b1;
    warp_barrier("mma.sync");
    auto A = [&](int row, int col) {  // the lane and register that hold A[row][col]
        const int lane = (row % 8) * 4 + (col % 8) / 2;
        const int reg = (row >= 8 ? 1 : 0) + (col >= 8 ? 2 : 0);
        return unpack(static_cast<uint32_t>(w.slot[lane][reg]), col % 2, bf16);
    };
    auto B = [&](int row, int col) {
        const int lane = col * 4 + (row % 8) / 2;
        return unpack(static_cast<uint32_t>(w.slot[lane][row >= 8 ? 5 : 4]), row % 2, bf16);
    };
    const int g = g_cur->lane / 4, q = g_cur->lane % 4;
    float out[4];
    for (int e = 0; e < 4; ++e) {
        const int row = g + 8 * (e / 2), col = 2 * q + (e % 2);
        float acc = d[e];
        for (int k = 0; k < 16; ++k) acc = std::fma(A(row, k), B(k, col), acc);
        out[e] = acc;
    }
    warp_barrier("mma.sync");  // every lane has read the fragments before the slots are reused
    for (int e = 0; e < 4; ++e) d[e] = out[e];
}

// ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16: lane 8i+j gives the address of row j of
// matrix i (8 consecutive b16); lane l receives, of each matrix i transposed,
// r[i] = {M_i[2(l%4)][l/4] (low), M_i[2(l%4)+1][l/4] (high)}.
inline void ldmatrix_x4_trans(unsigned (&r)[4], const void* row) {
    Warp& w = g_block->warps[g_cur->warp];
    w.slot[g_cur->lane][0] = reinterpret_cast<uint64_t>(row);
    warp_barrier("ldmatrix");
    const int g = g_cur->lane / 4, q = g_cur->lane % 4;
    for (int i = 0; i < 4; ++i) {
        const auto* r0 = reinterpret_cast<const uint16_t*>(w.slot[8 * i + 2 * q][0]);
        const auto* r1 = reinterpret_cast<const uint16_t*>(w.slot[8 * i + 2 * q + 1][0]);
        r[i] = static_cast<unsigned>(r0[g]) | (static_cast<unsigned>(r1[g]) << 16);
    }
    warp_barrier("ldmatrix");
}

// cp.async.cg 16 bytes (src_bytes 0: zero fill). Synchronous here: commit/wait are no-ops.
inline void cp_async16(void* dst, const void* src, bool valid) {
    if (reinterpret_cast<uintptr_t>(dst) % 16 || (valid && reinterpret_cast<uintptr_t>(src) % 16))
        fail("cp.async: 16-byte copy from/to an address that is not 16-byte aligned");
    if (valid) std::memcpy(dst, src, 16);
    else std::memset(dst, 0, 16);
}

}  // namespace avs_emu

// -- CUDA built-ins -----------------------------------------------------------------------------------
#define threadIdx (avs_emu::g_cur->tid)
#define blockIdx (avs_emu::g_block_idx)
#define blockDim (avs_emu::g_block_dim)
#define gridDim (avs_emu::g_grid_dim)

inline void __syncthreads() { avs_emu::block_barrier(); }
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask) { return avs_emu::shfl_xor(mask, value, lane_mask); }
template <typename T>
inline T __ldg(const T* p) { return *p; }
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
