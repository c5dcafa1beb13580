// Plain parameter structs of the avs-engine kernels (one per kernel).
//
// Host code fills them byte for byte (ctypes mirrors in launchers.py; a CPU
// test compiles this header with the host compiler and compares sizeof and
// offsetof with the ctypes layout). Rules: pointers first, then 64-bit
// strides, then 32-bit sizes; strides are in elements; every float* buffer
// is float32, every void* buffer is the kernel's input type (f32/f16/bf16).
#pragma once

// Temporal audio update, part 1: per pixel n and frame t, the visual query
// x_tn = v_tn + vpe_n attends over the T audio keys; the softmax weights are
// summed over the block's pixels.   S[t,n,h,s] = x_tn . M[:, h*T+s] + beta[h*T+s]
struct TemporalAudioParams {
    const void* v;          // [T, N, C] visual tokens
    const void* vpe;        // [N, C] visual positional encoding
    const float* m;         // [C, H*T] W_q folded into the audio keys, times d^-1/2
    const float* beta;      // [H*T] query-bias term b_q . K * d^-1/2
    float* partial;         // [T, num_tiles, H*T] per-block sums of softmax weights
    long long v_frame_stride;
    long long v_pixel_stride;
    long long vpe_pixel_stride;
    int T, N, C, H;
    int num_tiles;          // gridDim.x
};

// Temporal audio update, part 2: mean weights and their values.
//   Pbar[t,h,s] = sum_tiles partial / N;   out[t,c] = sum_s Pbar[t,h(c),s] val[s,c]
struct TemporalAudioCombineParams {
    const float* partial;   // [T, num_tiles, H*T]
    const float* values;    // [T, C] projected audio values W_v a + b_v
    float* pbar;            // [T, H*T] mean attention weights
    float* out;             // [T, C] pixel mean of the attention output (before out_proj)
    int T, N, C, H;
    int num_tiles;
};

// Temporal visual update: per pixel n, the T audio queries attend over the
// pixel's T visual keys x_sn = v_sn + vpe_n.
//   S[s,n,h,t] = x_sn . M[:, h*T+t];  P = softmax over s;  out[t,n,c] = sum_s P val[s,n,c]
struct TemporalVisualParams {
    const void* v;          // [T, N, C] visual tokens (keys are v + vpe)
    const void* vpe;        // [N, C]
    const void* values;     // [T, N, C] projected values W_v v + b_v
    const float* m;         // [C, H*T] W_k folded into the audio queries, times d^-1/2
    void* out;              // [T, N, C] attention output (before out_proj)
    long long v_frame_stride, v_pixel_stride;
    long long vpe_pixel_stride;
    long long values_frame_stride, values_pixel_stride;
    long long out_frame_stride, out_pixel_stride;
    int T, N, C, H;
};

// Spatial visual update, part 1 (split-K over pixels): per frame t and head h,
// one audio query over the N pixels, online softmax, weighted sum of raw v.
//   s_n = x_tn . M_t[:, h];  per split: m = max s, l = sum e^(s-m), acc = sum e^(s-m) v_tn
struct SpatialVisualParams {
    const void* v;          // [T, N, C]
    const void* vpe;        // [N, C]
    const float* m;         // [T, C, H] W_k folded into each frame's audio query, times d^-1/2
    float* partial_max;     // [T, num_splits, H]
    float* partial_sum;     // [T, num_splits, H]
    float* partial_acc;     // [T, num_splits, H, C]
    long long v_frame_stride, v_pixel_stride;
    long long vpe_pixel_stride;
    int T, N, C, H;
    int num_splits;         // gridDim.x (one split per block)
    int pixels_per_warp;    // each warp of a block takes a contiguous run of pixels
};

// Spatial visual update, part 2: merge the splits.
//   M = max_i m_i;  L = sum_i l_i e^(m_i-M);  vbar[t,h,c] = sum_i acc_i e^(m_i-M) / L
struct SpatialVisualCombineParams {
    const float* partial_max;
    const float* partial_sum;
    const float* partial_acc;
    float* out;             // [T, H, C]
    int T, C, H;
    int num_splits;
};

// SAM global attention with decomposed relative positions (FlashAttention-2 style).
//   S[i,j] = scale q_i . k_j + rel_h[i, kh(j)] + rel_w[i, kw(j)];  out_i = softmax_j(S) v
// q, k, v, out are addressed as [B, L, heads, D] through strides (head dim contiguous),
// so SAM's fused qkv projection [B, L, 3, heads, D] is read in place.
struct RelPosAttnParams {
    const void* q;
    const void* k;
    const void* v;
    const float* rel_h;     // [B*heads, L_q, k_h]  q_i . Rh[h(i), kh]  (rows contiguous)
    const float* rel_w;     // [B*heads, L_q, k_w]  q_i . Rw[w(i), kw]
    void* out;
    long long q_batch_stride, q_token_stride, q_head_stride;
    long long k_batch_stride, k_token_stride, k_head_stride;
    long long v_batch_stride, v_token_stride, v_head_stride;
    long long o_batch_stride, o_token_stride, o_head_stride;
    long long rel_h_bh_stride, rel_w_bh_stride;   // per (batch*heads) slice; row strides are k_h / k_w
    int B, heads;
    int q_h, q_w;           // query grid: L_q = q_h * q_w
    int k_h, k_w;           // key grid:   L_k = k_h * k_w
    float scale;            // head_dim^-1/2
};
