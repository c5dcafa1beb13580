// SAM global-block attention with decomposed relative positions, FlashAttention-2 style.
//
//   S[i,j] = scale q_i . k_j + rel_h[i, kh(j)] + rel_w[i, kw(j)]      (kh = j / k_w, kw = j % k_w)
//   out_i  = sum_j softmax_j(S[i,:]) v_j
//
// rel_h = q . Rh and rel_w = q . Rw (SAM's add_decomposed_rel_pos, unscaled q) are small
// ([B*heads, L, 64] each) and computed beforehand; the bias is added to each score tile on
// the fly, so the [L, L] score matrix never exists. One block = 64 query rows of one
// (batch, head), 4 warps x 16 rows; key/value tiles of 64 rows, double-buffered with
// cp.async; Q K^T and P V on tensor cores (mma.sync m16n8k16, f16/bf16 in, f32 accumulate);
// online softmax in f32 on the accumulator fragments (base-2 exponent).
//
// Fragment layouts (PTX ISA, mma.m16n8k16; g = lane/4, q = lane%4):
//   A 16x16 row-major: a0 = A[g][2q..2q+1], a1 = A[g+8][2q..], a2 = A[g][2q+8..], a3 = A[g+8][2q+8..]
//   B 16x8 col-major:  b0 = B[2q..2q+1][g], b1 = B[2q+8..2q+9][g]
//   C 16x8:            c0,c1 = C[g][2q..2q+1], c2,c3 = C[g+8][2q..2q+1]
// Two adjacent 16x8 score fragments are exactly one A fragment of P (FA-2's register reuse).
#include "common.cuh"
#include "params.h"

namespace {

constexpr int kBr = 64;          // query rows per block
constexpr int kBc = 64;          // keys per tile
constexpr int kWarps = kBr / 16; // one warp per 16 query rows
constexpr int kThreads = kWarps * 32;
constexpr int kPad = 8;          // halves per shared row: 16-byte rows, conflict-free fragment loads
constexpr int kMaxRel = 64;      // k_h, k_w <= 64
constexpr int kRelStride = kMaxRel + 8;  // floats; = 8 mod 32 so float2 loads of a quad are conflict-free
constexpr float kLog2e = 1.4426950408889634f;

template <typename In, int D>
struct Smem {
    In q[kBr][D + kPad];
    In k[2][kBc][D + kPad];
    In v[2][kBc][D + kPad];
    float rel_h[kBr][kRelStride];
    float rel_w[kBr][kRelStride];
    int key_h[kBc];              // kh(j), kw(j) of the current key tile (general grid only)
    int key_w[kBc];
};

#ifdef AVS_CPU_EMULATION
// CPU emulation build (kernels/emulator): the warp-collective instructions as the PTX ISA defines them.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) { avs_emu::cp_async16(dst, src, valid); }
__device__ __forceinline__ void cp_async_commit() {}
template <int N>
__device__ __forceinline__ void cp_async_wait() {}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* row) { avs_emu::ldmatrix_x4_trans(r, row); }
__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1, __half) {
    avs_emu::mma_m16n8k16(d, a, b0, b1, false);
}
__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1,
                                         __nv_bfloat16) {
    avs_emu::mma_m16n8k16(d, a, b0, b1, true);
}
#else
__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy that bypasses registers; src_bytes = 0 writes zeros.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Four 8x8 b16 matrices, transposed: gives the B fragments of two adjacent 8-column tiles of V.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row)));
}

__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1, __half) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1,
                                         __nv_bfloat16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

// Two f32 -> one 32-bit register of In pairs (lower column in the low half).
__device__ __forceinline__ unsigned pack2(float lo, float hi, __half) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&h);
}
__device__ __forceinline__ unsigned pack2(float lo, float hi, __nv_bfloat16) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&h);
}
__device__ __forceinline__ void store2(__half* dst, float lo, float hi) {
    *reinterpret_cast<__half2*>(dst) = __floats2half2_rn(lo, hi);
}
__device__ __forceinline__ void store2(__nv_bfloat16* dst, float lo, float hi) {
    *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(lo, hi);
}

// Copy rows [row0, row0+64) of a [L, D] slice (row stride `stride` elements) into shared memory;
// rows past L become zeros.
template <typename In, int D>
__device__ __forceinline__ void load_tile(In (*dst)[D + kPad], const In* src, long long stride, int row0, int L) {
    constexpr int kChunks = D / 8;  // 16-byte chunks per row
    for (int i = threadIdx.x; i < kBc * kChunks; i += kThreads) {
        const int row = i / kChunks, chunk = i % kChunks;
        const bool valid = row0 + row < L;
        const In* g = src + (valid ? (row0 + row) * stride + chunk * 8 : 0);
        cp_async16(&dst[row][chunk * 8], g, valid);
    }
}

template <typename In, int D>
__device__ __forceinline__ void relpos_flash_attn(const RelPosAttnParams& p) {
    static_assert(D % 16 == 0, "head dim must be a multiple of 16");
#ifdef AVS_CPU_EMULATION
    unsigned char* smem_raw = avs_emu::dynamic_smem();
#else
    extern __shared__ __align__(16) unsigned char smem_raw[];
#endif
    Smem<In, D>& sm = *reinterpret_cast<Smem<In, D>*>(smem_raw);

    const int Lq = p.q_h * p.q_w, Lk = p.k_h * p.k_w;
    const int bh = blockIdx.y, b = bh / p.heads, head = bh % p.heads;
    const int q0 = blockIdx.x * kBr;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, qd = lane % 4;
    const In* q = static_cast<const In*>(p.q) + b * p.q_batch_stride + head * p.q_head_stride;
    const In* k = static_cast<const In*>(p.k) + b * p.k_batch_stride + head * p.k_head_stride;
    const In* v = static_cast<const In*>(p.v) + b * p.v_batch_stride + head * p.v_head_stride;
    In* out = static_cast<In*>(p.out) + b * p.o_batch_stride + head * p.o_head_stride;
    const float* rel_h = p.rel_h + bh * p.rel_h_bh_stride;
    const float* rel_w = p.rel_w + bh * p.rel_w_bh_stride;
    const int num_tiles = (Lk + kBc - 1) / kBc;
    const bool key_row_tiles = p.k_w == kBc;  // SAM's 64x64 grid: tile t is key row t, column = kw

    // Q tile, first K/V tile (group 0); the small bias tables with ordinary loads meanwhile
    load_tile<In, D>(sm.q, q, p.q_token_stride, q0, Lq);
    load_tile<In, D>(sm.k[0], k, p.k_token_stride, 0, Lk);
    load_tile<In, D>(sm.v[0], v, p.v_token_stride, 0, Lk);
    cp_async_commit();
    for (int i = threadIdx.x; i < kBr * kMaxRel; i += kThreads) {
        const int row = i / kMaxRel, col = i % kMaxRel, qi = q0 + row;
        sm.rel_h[row][col] = (qi < Lq && col < p.k_h) ? rel_h[qi * p.k_h + col] : 0.f;
        sm.rel_w[row][col] = (qi < Lq && col < p.k_w) ? rel_w[qi * p.k_w + col] : 0.f;
    }

    const int r0 = warp * 16 + g;  // this thread's two rows: r0 and r0 + 8 (block-local)
    unsigned qf[D / 16][4];        // the warp's Q rows as A fragments, kept for the whole loop
    float o[D / 8][4];             // output accumulator fragments
    float m[2] = {avs::neg_inf(), avs::neg_inf()};  // running row max (base-2 domain)
    float l[2] = {0.f, 0.f};       // running row sum of e (this thread's columns only)
#pragma unroll
    for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;

    for (int tile = 0; tile < num_tiles; ++tile) {
        const int buf = tile & 1;
        if (tile + 1 < num_tiles) {  // prefetch the next K/V tile into the other buffer (group tile+1)
            load_tile<In, D>(sm.k[buf ^ 1], k, p.k_token_stride, (tile + 1) * kBc, Lk);
            load_tile<In, D>(sm.v[buf ^ 1], v, p.v_token_stride, (tile + 1) * kBc, Lk);
            cp_async_commit();
            cp_async_wait<1>();  // everything but the newest group has landed: tile `tile` (and Q)
        } else {
            cp_async_wait<0>();
        }
        if (!key_row_tiles && threadIdx.x < kBc) {
            const int j = min(tile * kBc + threadIdx.x, Lk - 1);  // past L_k: any valid index (masked below)
            sm.key_h[threadIdx.x] = j / p.k_w;
            sm.key_w[threadIdx.x] = j % p.k_w;
        }
        __syncthreads();  // tile `tile` (and on the first pass Q and the bias tables) is visible to all warps

        if (tile == 0) {
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                const int c = kk * 16 + 2 * qd;
                qf[kk][0] = *reinterpret_cast<const unsigned*>(&sm.q[r0][c]);
                qf[kk][1] = *reinterpret_cast<const unsigned*>(&sm.q[r0 + 8][c]);
                qf[kk][2] = *reinterpret_cast<const unsigned*>(&sm.q[r0][c + 8]);
                qf[kk][3] = *reinterpret_cast<const unsigned*>(&sm.q[r0 + 8][c + 8]);
            }
        }

        // S = Q K^T for the warp's 16 rows x 64 keys: 8 fragments of 16x8
        float s[kBc / 8][4];
#pragma unroll
        for (int nt = 0; nt < kBc / 8; ++nt) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                const In* krow = &sm.k[buf][nt * 8 + g][kk * 16 + 2 * qd];
                mma16816(s[nt], qf[kk], *reinterpret_cast<const unsigned*>(krow),
                         *reinterpret_cast<const unsigned*>(krow + 8), In());
            }
        }

        // S = (scale q.k + rel_h + rel_w) log2(e); keys past L_k get -inf
#pragma unroll
        for (int nt = 0; nt < kBc / 8; ++nt) {
            const int c = nt * 8 + 2 * qd;  // tile column of elements 0 and 2; +1 for 1 and 3
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int row = r0 + 8 * (e >> 1), col = c + (e & 1);
                float bias;
                if (key_row_tiles) bias = sm.rel_h[row][tile] + sm.rel_w[row][col];
                else bias = sm.rel_h[row][sm.key_h[col]] + sm.rel_w[row][sm.key_w[col]];
                const bool valid = tile * kBc + col < Lk;
                s[nt][e] = valid ? fmaf(s[nt][e], p.scale, bias) * kLog2e : avs::neg_inf();
            }
        }

        // online softmax per row: new max, rescale of the old state, e = 2^(S - max)
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {  // hr 0: row r0 (elements 0,1); hr 1: row r0+8 (elements 2,3)
            float mx = m[hr];
#pragma unroll
            for (int nt = 0; nt < kBc / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * hr], s[nt][2 * hr + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(avs::kFullMask, mx, 1));  // the 4 lanes of a quad share a row
            mx = fmaxf(mx, __shfl_xor_sync(avs::kFullMask, mx, 2));
            const float base = (mx == avs::neg_inf()) ? 0.f : mx;  // a fully masked row stays at zero
            const float corr = exp2f(m[hr] - base);                // 2^(m_old - m_new)
            m[hr] = mx;
            float rowsum = 0.f;
#pragma unroll
            for (int nt = 0; nt < kBc / 8; ++nt) {
                s[nt][2 * hr] = exp2f(s[nt][2 * hr] - base);
                s[nt][2 * hr + 1] = exp2f(s[nt][2 * hr + 1] - base);
                rowsum += s[nt][2 * hr] + s[nt][2 * hr + 1];
            }
            l[hr] = fmaf(l[hr], corr, rowsum);  // l = l corr + sum e
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                o[n][2 * hr] *= corr;  // O = O corr
                o[n][2 * hr + 1] *= corr;
            }
        }

        // O += P V: P from the score registers (rounded to In), V fragments by ldmatrix.trans
#pragma unroll
        for (int kk = 0; kk < kBc / 16; ++kk) {
            unsigned pa[4];
            pa[0] = pack2(s[2 * kk][0], s[2 * kk][1], In());
            pa[1] = pack2(s[2 * kk][2], s[2 * kk][3], In());
            pa[2] = pack2(s[2 * kk + 1][0], s[2 * kk + 1][1], In());
            pa[3] = pack2(s[2 * kk + 1][2], s[2 * kk + 1][3], In());
            // lanes 0-7: keys 0-7, lanes 8-15: keys 8-15 (columns n), lanes 16-31: the same at n + 8
            const int key = kk * 16 + (lane & 15);
#pragma unroll
            for (int n = 0; n < D / 8; n += 2) {
                unsigned vb[4];
                ldmatrix_x4_trans(vb, &sm.v[buf][key][n * 8 + (lane >> 4) * 8]);
                mma16816(o[n], pa, vb[0], vb[1], In());
                mma16816(o[n + 1], pa, vb[2], vb[3], In());
            }
        }
        __syncthreads();  // all warps are done with buffer `buf` before the next prefetch overwrites it
    }

    // out = O / l, with l summed over the quad
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
        float total = l[hr];
        total += __shfl_xor_sync(avs::kFullMask, total, 1);
        total += __shfl_xor_sync(avs::kFullMask, total, 2);
        const float inv = 1.f / total;
        const int qi = q0 + r0 + 8 * hr;
        if (qi < Lq) {
            In* dst = out + qi * p.o_token_stride;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) store2(dst + n * 8 + 2 * qd, o[n][2 * hr] * inv, o[n][2 * hr + 1] * inv);
        }
    }
}

}  // namespace

#define AVS_RELPOS_KERNEL(NAME, IN, D)                                                      \
    extern "C" __global__ void __launch_bounds__(kThreads) NAME(const RelPosAttnParams p) { \
        relpos_flash_attn<IN, D>(p);                                                        \
    }                                                                                       \
    extern "C" __constant__ int NAME##_smem_bytes = static_cast<int>(sizeof(Smem<IN, D>));

AVS_RELPOS_KERNEL(relpos_flash_attn_f16_d64, __half, 64)
AVS_RELPOS_KERNEL(relpos_flash_attn_f16_d80, __half, 80)
AVS_RELPOS_KERNEL(relpos_flash_attn_bf16_d64, __nv_bfloat16, 64)
AVS_RELPOS_KERNEL(relpos_flash_attn_bf16_d80, __nv_bfloat16, 80)

extern "C" __constant__ int relpos_geometry[4] = {kBr, kBc, kThreads, kMaxRel};
