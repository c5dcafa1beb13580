"""Exact-algebra PyTorch forms of the model's attention, and the passes that swap them in.

The reference model (``avs_engine.reference``) stays plain; these modules
compute the same functions with less work, and a pass replaces modules of a
built model with them (the export wrappers and the torch backend's
``--fused`` option use the same passes):

- ``fused_fusion``: the ST-BAVA block rewritten so no attention is expanded
  over 4096 pixels x T needlessly; ``fuse_stbava(model)``.
- ``folded_decoder``: the mask decoder's token/image cross attention with the
  projections folded into the 7 tokens; ``fold_decoder_attention(decoder)``.
- ``relpos_matmul``: SAM's decomposed relative-position bias computed inside
  the score matrix product.
- ``sdpa_attention``: SAM's image-encoder attention on
  ``scaled_dot_product_attention`` with that bias folded into q and k, so no
  [heads, N, N] score matrix exists; ``use_sdpa_attention(model)`` (training,
  and the torch backend on CUDA).
- ``torch_ops``: on CUDA, the fused CUDA kernels (``avs_engine.kernels``)
  behind the fused block and the encoder's global attention; ``use_cuda_kernels(model)``.

Everything here needs torch; nothing in the runtime imports it.
"""
