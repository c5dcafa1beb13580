// ST-BAVA temporal attention, per pixel over the T frames, audio side shared by all pixels.
//
// Both directions use the folded form of nn.MultiheadAttention (docs/kernels.md):
// the audio tokens' projection is folded into a small matrix M [C, H*T], so a
// pixel's scores are one row x . M (x = v + vpe, added on the fly) instead of
// a 256x256 projection per pixel.
//
//   temporal_audio_partial_*  S[t,n,h,s] = x_tn . M[:,h*T+s] + beta;  P = softmax_s;
//                             per block: sum of P over its pixels
//   temporal_audio_combine    Pbar = sum over blocks / N;  out[t,c] = sum_s Pbar[t,h,s] val[s,c]
//   temporal_visual_*         S[s,n,h,t] = x_sn . M[:,h*T+t];  P = softmax_s;
//                             out[t,n,c] = sum_s P[s,n,h,t] val[s,n,c]
//
// Shapes are compile-time (-DAVS_T=, -DAVS_H=, -DAVS_C=; defaults: vit_h's T=5, 8 heads, 256);
// NVRTC builds one module per shape. Inputs f32/f16/bf16, all arithmetic in f32.
#include "common.cuh"
#include "params.h"

#ifndef AVS_T
#define AVS_T 5
#endif
#ifndef AVS_H
#define AVS_H 8
#endif
#ifndef AVS_C
#define AVS_C 256
#endif

namespace {

constexpr int kT = AVS_T;
constexpr int kH = AVS_H;
constexpr int kC = AVS_C;
constexpr int kHT = kH * kT;   // score columns per row
constexpr int kD = kC / kH;    // head width
static_assert(kT >= 1 && kT <= 8, "T must be in 1..8");
static_assert(kC % kH == 0, "C must be a multiple of H");
static_assert(kHT <= 64, "H*T must be <= 64 (scores live in registers)");

// ---- audio update -------------------------------------------------------------------------

constexpr int kAudioPixels = 128;   // pixels per block, one thread per pixel (frame = blockIdx.y)
constexpr int kAudioChunk = 32;     // channels staged in shared memory per step
static_assert(kC % kAudioChunk == 0, "C must be a multiple of 32");

template <typename In>
__device__ __forceinline__ void temporal_audio_partial(const TemporalAudioParams& p) {
    // x = v + vpe for the block's pixels, one chunk of channels; +1 pad so that thread r
    // reading row r is free of bank conflicts.
    __shared__ float xs[kAudioPixels][kAudioChunk + 1];
    __shared__ float ms[kAudioChunk][kHT];           // M rows of the chunk (read as broadcasts)
    __shared__ float warp_sums[kAudioPixels / 32][kHT];

    if (p.T != kT || p.C != kC || p.H != kH) return;  // launcher validates; outputs stay unwritten
    const In* v = static_cast<const In*>(p.v);
    const In* vpe = static_cast<const In*>(p.vpe);
    const int t = blockIdx.y;
    const int n0 = blockIdx.x * kAudioPixels;
    const int r = threadIdx.x;
    const bool valid = n0 + r < p.N;
    const long long frame = t * p.v_frame_stride;

    float s[kHT];
#pragma unroll
    for (int j = 0; j < kHT; ++j) s[j] = 0.f;

    for (int c0 = 0; c0 < kC; c0 += kAudioChunk) {
        // stage x[n0:n0+128, c0:c0+32]: consecutive threads read consecutive channels (coalesced)
        for (int i = threadIdx.x; i < kAudioPixels * kAudioChunk; i += kAudioPixels) {
            const int row = i / kAudioChunk, col = i % kAudioChunk, n = n0 + row;
            float x = 0.f;
            if (n < p.N)
                x = avs::to_float(v[frame + n * p.v_pixel_stride + c0 + col]) +
                    avs::to_float(vpe[n * p.vpe_pixel_stride + c0 + col]);  // x = v + vpe
            xs[row][col] = x;
        }
        for (int i = threadIdx.x; i < kAudioChunk * kHT; i += kAudioPixels)
            ms[i / kHT][i % kHT] = p.m[(c0 + i / kHT) * kHT + i % kHT];
        __syncthreads();  // the chunk of x and M is staged before any thread reads it
#pragma unroll 4
        for (int k = 0; k < kAudioChunk; ++k) {
            const float x = xs[r][k];
#pragma unroll
            for (int j = 0; j < kHT; ++j) s[j] = fmaf(x, ms[k][j], s[j]);  // S[t,n,:] += x_c M[c,:]
        }
        __syncthreads();  // every thread is done reading the chunk before the next one overwrites it
    }

    // softmax over the T audio keys, per head; a pixel past N contributes zero
#pragma unroll
    for (int h = 0; h < kH; ++h) {
        float mx = avs::neg_inf();
#pragma unroll
        for (int k = 0; k < kT; ++k) {
            s[h * kT + k] += __ldg(p.beta + h * kT + k);  // + b_q . K_s * d^-1/2
            mx = fmaxf(mx, s[h * kT + k]);
        }
        float sum = 0.f;
#pragma unroll
        for (int k = 0; k < kT; ++k) {
            s[h * kT + k] = expf(s[h * kT + k] - mx);  // e^(S - max)
            sum += s[h * kT + k];
        }
        const float inv = valid ? 1.f / sum : 0.f;  // P = e / sum e
#pragma unroll
        for (int k = 0; k < kT; ++k) s[h * kT + k] *= inv;
    }

    // sum of P over the block's pixels: butterfly within each warp, then warps in order
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int j = 0; j < kHT; ++j) {
        const float w = avs::warp_sum(s[j]);
        if (lane == 0) warp_sums[warp][j] = w;
    }
    __syncthreads();  // all warps' sums are in shared memory before the cross-warp sum
    if (threadIdx.x < kHT) {
        float acc = 0.f;
#pragma unroll
        for (int w = 0; w < kAudioPixels / 32; ++w) acc += warp_sums[w][threadIdx.x];  // fixed order
        p.partial[(static_cast<long long>(t) * p.num_tiles + blockIdx.x) * kHT + threadIdx.x] = acc;
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kAudioPixels) temporal_audio_partial_f32(const TemporalAudioParams p) {
    temporal_audio_partial<float>(p);
}
extern "C" __global__ void __launch_bounds__(kAudioPixels) temporal_audio_partial_f16(const TemporalAudioParams p) {
    temporal_audio_partial<__half>(p);
}
extern "C" __global__ void __launch_bounds__(kAudioPixels) temporal_audio_partial_bf16(const TemporalAudioParams p) {
    temporal_audio_partial<__nv_bfloat16>(p);
}

// One block per frame t; blockDim.x >= H*T.
extern "C" __global__ void __launch_bounds__(256) temporal_audio_combine(const TemporalAudioCombineParams p) {
    __shared__ float pbar[kHT];
    if (p.T != kT || p.C != kC || p.H != kH) return;  // launcher validates; outputs stay unwritten
    const int t = blockIdx.x;
    if (threadIdx.x < kHT) {
        float acc = 0.f;
        for (int i = 0; i < p.num_tiles; ++i)  // blocks in order: a deterministic sum
            acc += p.partial[(static_cast<long long>(t) * p.num_tiles + i) * kHT + threadIdx.x];
        acc /= static_cast<float>(p.N);  // Pbar = mean over pixels
        pbar[threadIdx.x] = acc;
        p.pbar[t * kHT + threadIdx.x] = acc;
    }
    __syncthreads();  // Pbar is complete before the weighted sum of values reads it
    for (int c = threadIdx.x; c < kC; c += blockDim.x) {
        const int h = c / kD;
        float o = 0.f;
#pragma unroll
        for (int k = 0; k < kT; ++k) o = fmaf(pbar[h * kT + k], p.values[k * kC + c], o);  // sum_s Pbar val_s
        p.out[t * kC + c] = o;
    }
}

// ---- visual update --------------------------------------------------------------------------

namespace {

constexpr int kVisPixels = (kT <= 5) ? 32 : 16;  // pixels per block
constexpr int kVisThreads = kVisPixels * kT;     // one thread per (key frame s, pixel)
constexpr int kVisChunk = 16;                    // channels staged per step
static_assert(kC % kVisChunk == 0, "C must be a multiple of 16");

template <typename In>
__device__ __forceinline__ void temporal_visual(const TemporalVisualParams& p) {
    __shared__ float xs[kVisThreads][kVisChunk + 1];   // x = v + vpe, row = s * kVisPixels + pixel
    __shared__ float ms[kVisChunk][kHT];
    __shared__ float ps[kVisPixels][kT][kHT + 1];      // scores, then softmax weights, per pixel

    if (p.T != kT || p.C != kC || p.H != kH) return;  // launcher validates; outputs stay unwritten
    const In* v = static_cast<const In*>(p.v);
    const In* vpe = static_cast<const In*>(p.vpe);
    const In* val = static_cast<const In*>(p.values);
    In* out = static_cast<In*>(p.out);
    const int n0 = blockIdx.x * kVisPixels;
    const int r = threadIdx.x;
    const int key_frame = r / kVisPixels, pix = r % kVisPixels;

    float s[kHT];
#pragma unroll
    for (int j = 0; j < kHT; ++j) s[j] = 0.f;

    for (int c0 = 0; c0 < kC; c0 += kVisChunk) {
        for (int i = threadIdx.x; i < kVisThreads * kVisChunk; i += kVisThreads) {
            const int row = i / kVisChunk, col = i % kVisChunk;
            const int sf = row / kVisPixels, n = n0 + row % kVisPixels;
            float x = 0.f;
            if (n < p.N)
                x = avs::to_float(v[sf * p.v_frame_stride + n * p.v_pixel_stride + c0 + col]) +
                    avs::to_float(vpe[n * p.vpe_pixel_stride + c0 + col]);  // x = v + vpe
            xs[row][col] = x;
        }
        for (int i = threadIdx.x; i < kVisChunk * kHT; i += kVisThreads)
            ms[i / kHT][i % kHT] = p.m[(c0 + i / kHT) * kHT + i % kHT];
        __syncthreads();  // the chunk of x and M is staged before any thread reads it
#pragma unroll 4
        for (int k = 0; k < kVisChunk; ++k) {
            const float x = xs[r][k];
#pragma unroll
            for (int j = 0; j < kHT; ++j) s[j] = fmaf(x, ms[k][j], s[j]);  // S[s,n,:] += x_c M[c,:]
        }
        __syncthreads();  // every thread is done reading the chunk before the next one overwrites it
    }
#pragma unroll
    for (int j = 0; j < kHT; ++j) ps[pix][key_frame][j] = s[j];
    __syncthreads();  // all T key frames of every pixel are in ps before the softmax over s

    // softmax over the key frames s for each (pixel, head, query frame)
    for (int i = threadIdx.x; i < kVisPixels * kHT; i += kVisThreads) {
        const int px = i / kHT, j = i % kHT;
        float mx = avs::neg_inf();
#pragma unroll
        for (int k = 0; k < kT; ++k) mx = fmaxf(mx, ps[px][k][j]);
        float sum = 0.f;
#pragma unroll
        for (int k = 0; k < kT; ++k) {
            const float e = expf(ps[px][k][j] - mx);  // e^(S - max)
            ps[px][k][j] = e;
            sum += e;
        }
        const float inv = 1.f / sum;
#pragma unroll
        for (int k = 0; k < kT; ++k) ps[px][k][j] *= inv;  // P = e / sum e
    }
    __syncthreads();  // the weights are final before the weighted sum of values reads them

    // out[t,n,c] = sum_s P[s,n,h(c),t] val[s,n,c]; consecutive threads take consecutive channels
    for (int i = threadIdx.x; i < kVisPixels * kC; i += kVisThreads) {
        const int px = i / kC, c = i % kC, n = n0 + px;
        if (n >= p.N) continue;
        const int h = c / kD;
        float vs[kT];
#pragma unroll
        for (int k = 0; k < kT; ++k)
            vs[k] = avs::to_float(val[k * p.values_frame_stride + n * p.values_pixel_stride + c]);
#pragma unroll
        for (int t = 0; t < kT; ++t) {
            float o = 0.f;
#pragma unroll
            for (int k = 0; k < kT; ++k) o = fmaf(ps[px][k][h * kT + t], vs[k], o);
            out[t * p.out_frame_stride + n * p.out_pixel_stride + c] = avs::from_float<In>(o);
        }
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kVisThreads) temporal_visual_f32(const TemporalVisualParams p) {
    temporal_visual<float>(p);
}
extern "C" __global__ void __launch_bounds__(kVisThreads) temporal_visual_f16(const TemporalVisualParams p) {
    temporal_visual<__half>(p);
}
extern "C" __global__ void __launch_bounds__(kVisThreads) temporal_visual_bf16(const TemporalVisualParams p) {
    temporal_visual<__nv_bfloat16>(p);
}

// Launch geometry, readable by the host (cuModuleGetGlobal) so that Python never guesses it.
extern "C" __constant__ int temporal_geometry[4] = {kAudioPixels, kVisPixels, kVisThreads, kHT};
