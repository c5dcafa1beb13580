// ST-BAVA spatial visual update: per frame, one audio query attends over the N pixels.
//
// Folded form (docs/kernels.md): the key projection is folded into the frame's query,
// M_t[:, h] = W_k,h^T q_t,h d^-1/2, the key bias drops out of the softmax, and
// since the weights sum to 1 the raw visual tokens are averaged first; the value
// and output projections run afterwards on [T, H, C] (host side).
//
//   spatial_visual_partial_*  split-K: each block takes a slice of the pixels of one
//                             frame; each warp runs an online softmax over its run of
//                             pixels; the block merges its warps in order.
//   spatial_visual_combine    merges the splits:  vbar = sum_i acc_i e^(m_i-M) / sum_i l_i e^(m_i-M)
//
// Shapes are compile-time (-DAVS_H=, -DAVS_C=; defaults 8 heads, 256 channels).
#include "common.cuh"
#include "params.h"

#ifndef AVS_H
#define AVS_H 8
#endif
#ifndef AVS_C
#define AVS_C 256
#endif

namespace {

constexpr int kH = AVS_H;
constexpr int kC = AVS_C;
constexpr int kWarps = 8;             // warps per block
constexpr int kThreads = kWarps * 32;
constexpr int kPerLane = kC / 32;     // lane l owns channels l, l+32, l+64, ...
constexpr int kMaxSplits = 128;       // splits per frame the combine kernel can merge
static_assert(kC % 32 == 0, "C must be a multiple of 32");
static_assert(kH * kPerLane <= 64, "H * C/32 accumulators per lane must fit in registers");

template <typename In>
__device__ __forceinline__ void spatial_visual_partial(const SpatialVisualParams& p) {
    __shared__ float ms[kC][kH + 1];      // M_t; +1 pad: lanes reading rows l+32i hit distinct banks
    __shared__ float warp_max[kWarps][kH];
    __shared__ float block_sum[kH];
    __shared__ float block_acc[kH][kC];

    if (p.C != kC || p.H != kH) return;  // launcher validates; outputs stay unwritten
    const In* v = static_cast<const In*>(p.v);
    const In* vpe = static_cast<const In*>(p.vpe);
    const int t = blockIdx.y;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    for (int i = threadIdx.x; i < kC * kH; i += kThreads)
        ms[i / kH][i % kH] = p.m[(static_cast<long long>(t) * kC + i / kH) * kH + i % kH];
    for (int i = threadIdx.x; i < kH * kC; i += kThreads) block_acc[i / kC][i % kC] = 0.f;
    if (threadIdx.x < kH) block_sum[threadIdx.x] = 0.f;
    __syncthreads();  // M_t is staged and the block accumulators are zero before use

    // this warp's run of pixels
    const int first = (blockIdx.x * kWarps + warp) * p.pixels_per_warp;
    const int last = min(first + p.pixels_per_warp, p.N);
    const long long frame = t * p.v_frame_stride;

    float m[kH], l[kH], acc[kH][kPerLane];
#pragma unroll
    for (int h = 0; h < kH; ++h) {
        m[h] = avs::neg_inf();
        l[h] = 0.f;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) acc[h][i] = 0.f;
    }

    for (int n = first; n < last; ++n) {
        float vv[kPerLane], sc[kH];
#pragma unroll
        for (int h = 0; h < kH; ++h) sc[h] = 0.f;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
            const int c = lane + 32 * i;
            vv[i] = avs::to_float(v[frame + n * p.v_pixel_stride + c]);
            const float x = vv[i] + avs::to_float(vpe[n * p.vpe_pixel_stride + c]);  // key x = v + vpe
#pragma unroll
            for (int h = 0; h < kH; ++h) sc[h] = fmaf(x, ms[c][h], sc[h]);  // lane's part of x . M_t[:,h]
        }
#pragma unroll
        for (int h = 0; h < kH; ++h) {
            const float s = avs::warp_sum(sc[h]);     // score s_n, on every lane
            const float mn = fmaxf(m[h], s);          // running max
            const float corr = expf(m[h] - mn);       // rescale of the old sums (0 on the first pixel)
            const float e = expf(s - mn);             // e^(s_n - max)
            l[h] = fmaf(l[h], corr, e);               // l = l corr + e
#pragma unroll
            for (int i = 0; i < kPerLane; ++i) acc[h][i] = fmaf(acc[h][i], corr, e * vv[i]);  // acc = acc corr + e v_n
            m[h] = mn;
        }
    }

    // merge the block's warps: common max, then add the rescaled sums warp by warp
    if (lane == 0) {
#pragma unroll
        for (int h = 0; h < kH; ++h) warp_max[warp][h] = m[h];
    }
    __syncthreads();  // every warp's running max is visible before the block max is taken
    float bm[kH];
#pragma unroll
    for (int h = 0; h < kH; ++h) {
        bm[h] = avs::neg_inf();
#pragma unroll
        for (int w = 0; w < kWarps; ++w) bm[h] = fmaxf(bm[h], warp_max[w][h]);
        const float corr = (m[h] == avs::neg_inf()) ? 0.f : expf(m[h] - bm[h]);  // an empty warp adds 0
        l[h] *= corr;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) acc[h][i] *= corr;
    }
    for (int w = 0; w < kWarps; ++w) {
        if (warp == w) {
#pragma unroll
            for (int h = 0; h < kH; ++h) {
#pragma unroll
                for (int i = 0; i < kPerLane; ++i) block_acc[h][lane + 32 * i] += acc[h][i];
                if (lane == 0) block_sum[h] += l[h];
            }
        }
        __syncthreads();  // warp w's adds land before warp w+1's: a fixed summation order
    }

    const long long split = static_cast<long long>(t) * p.num_splits + blockIdx.x;
    for (int i = threadIdx.x; i < kH * kC; i += kThreads) p.partial_acc[split * kH * kC + i] = block_acc[i / kC][i % kC];
    if (threadIdx.x == 0) {
#pragma unroll
        for (int h = 0; h < kH; ++h) {
            p.partial_max[split * kH + h] = bm[h];
            p.partial_sum[split * kH + h] = block_sum[h];
        }
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) spatial_visual_partial_f32(const SpatialVisualParams p) {
    spatial_visual_partial<float>(p);
}
extern "C" __global__ void __launch_bounds__(kThreads) spatial_visual_partial_f16(const SpatialVisualParams p) {
    spatial_visual_partial<__half>(p);
}
extern "C" __global__ void __launch_bounds__(kThreads) spatial_visual_partial_bf16(const SpatialVisualParams p) {
    spatial_visual_partial<__nv_bfloat16>(p);
}

// One block per frame t, kThreads threads.
extern "C" __global__ void __launch_bounds__(kThreads) spatial_visual_combine(const SpatialVisualCombineParams p) {
    __shared__ float weight[kMaxSplits][kH];  // e^(m_i - M) / L per split and head

    if (p.C != kC || p.H != kH || p.num_splits > kMaxSplits) return;  // launcher validates
    const int t = blockIdx.x;
    const long long base = static_cast<long long>(t) * p.num_splits;
    if (threadIdx.x < kH) {
        const int h = threadIdx.x;
        float mx = avs::neg_inf();
        for (int i = 0; i < p.num_splits; ++i) mx = fmaxf(mx, p.partial_max[(base + i) * kH + h]);  // M = max m_i
        float total = 0.f;
        for (int i = 0; i < p.num_splits; ++i) {
            const float mi = p.partial_max[(base + i) * kH + h];
            const float w = (mi == avs::neg_inf()) ? 0.f : expf(mi - mx);  // an empty split weighs 0
            weight[i][h] = w;
            total = fmaf(p.partial_sum[(base + i) * kH + h], w, total);  // L = sum l_i e^(m_i-M)
        }
        const float inv = 1.f / total;
        for (int i = 0; i < p.num_splits; ++i) weight[i][h] *= inv;
    }
    __syncthreads();  // the split weights are final before the weighted sum reads them
    for (int j = threadIdx.x; j < kH * kC; j += kThreads) {
        const int h = j / kC;
        float o = 0.f;
        for (int i = 0; i < p.num_splits; ++i)  // splits in order: a deterministic sum
            o = fmaf(p.partial_acc[(base + i) * kH * kC + j], weight[i][h], o);
        p.out[static_cast<long long>(t) * kH * kC + j] = o;  // vbar[t,h,c]
    }
}

extern "C" __constant__ int spatial_geometry[3] = {kWarps, kThreads, kMaxSplits};
