"""avs-train: train ST-BAVA on AVSBench or on generated sounding-object videos."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import AvsError
from .common import echo_err
from .options import (CONTEXT, THREADS_HELP, AvsCommand, alias, config_option, device_option, precision_option, threads_option,
                      version_option, weights_option)


def is_preset_file(config: str) -> bool:
    """Whether ``--config`` names a training preset file ({"model": ..., "train": ...}) rather than a model config."""
    import json

    p = Path(config)
    if p.suffix.lower() != ".json" or not p.is_file():
        return False
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and ("model" in d or "train" in d)


@click.command(cls=AvsCommand, context_settings=CONTEXT)
@config_option("Model preset or JSON config (trained with the paper's recipe), or a preset file: JSON with a model config and "
               "recipe overrides ({'model': ..., 'train': ...}), e.g. avs_engine/models/demo_preset.json.")
@alias("--preset-file", to="config", type=click.Path(dir_okay=False), help="Old spelling of --config (a preset file).")
@click.option("--generated", is_flag=True, help="Train on generated sounding-object clips (train/val seed ranges) instead of AVSBench.")
@click.option("--data", "data_root", type=click.Path(file_okay=False, path_type=Path), help="AVSBench folder (s4_meta_data.csv / ms3_meta_data.csv, visual_frames, audio_wav, gt_masks).")
@click.option("--log-mel", type=click.Choice(["wav", "pickle"]), default="wav", show_default=True, help="AVSBench audio: our log-mel of audio_wav, or the shipped audio_log_mel pickles (read without executing them).")
@click.option("--subset", type=click.Choice(["s4", "ms3"]), default="s4", show_default=True, help="S4 protocol (loss on the first frame of train videos) or MS3 (all frames).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"), show_default=True, help="Where generated splits are cached.")
@weights_option("Starting weights: SAM, SAMA-AVS or ST-BAVA checkpoint, or a bundle (missing parts start random).")
@alias("--init", to="weights", type=click.Path(dir_okay=False, path_type=Path), help="Old spelling of --weights.")
@click.option("--vggish", type=click.Path(dir_okay=False, path_type=Path), help="torchvggish weights for the audio backbone.")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), help="Continue from a run's last.pt (same options as that run).")
@click.option("--epochs", type=int, help="Override the recipe's epochs.")
@click.option("--steps-per-epoch", type=int, help="Override: steps per epoch (0 = one pass).")
@click.option("--lr", type=float, help="Override the learning rate.")
@click.option("--batch-clips", type=int, help="Override: clips per step.")
@click.option("--micro-batch-clips", type=click.IntRange(min=0), help="Clips per forward/backward pass; gradients add up over "
              "the step's --batch-clips (the effective batch). 0: the whole batch at once (the default).")
@click.option("--checkpoint-blocks/--no-checkpoint-blocks", default=None, help="Recompute the encoder blocks' activations "
              "in the backward pass instead of keeping them (default: on for vit_b and larger).")
@click.option("--sdpa-attention/--no-sdpa-attention", default=None, help="The encoder's attention on "
              "scaled_dot_product_attention, no score matrices (default: on).")
@click.option("--log-every", type=click.IntRange(min=1), help="Steps between loss read-outs on the progress bar (default 20).")
@precision_option("The image encoder's compute precision, forward and backward: bf16 or fp16 autocast over float32 "
                  "weights (its LayerNorms, the audio backbone, the fusion, the decoder and the loss stay float32; "
                  "fp16 scales the loss against underflow); fp32 is IEEE float32. bf16 on GPUs that have it. "
                  "[default: fp32]")
@click.option("--workers", type=click.IntRange(min=0), metavar="N", help="Threads that build the next batches (decode, "
              "resize, normalise; pinned memory on CUDA) while the model runs, up to 2 batches ahead; 0: between "
              "steps on the main thread. The batches and results do not change (default 1).")
@click.option("--skip-memory-check", is_flag=True, help="Start even if the estimate of one step's memory exceeds what the device has.")
@click.option("--generated-train", type=int, help="Override: number of generated training clips.")
@click.option("--generated-val", type=int, help="Override: number of generated validation clips.")
@click.option("--fusion-variant", type=click.Choice(["full", "no_temporal", "no_audio_update"]), help="Ablation of the fusion (same weights layout).")
@click.option("--seed", type=int, help="Override the seed (initialisation and batch order).")
@threads_option(THREADS_HELP + " On a busy machine 1 is often fastest.")
@device_option()
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True, help="Folder holding the numbered training folders.")
@click.option("--name", default="train", show_default=True, help="Run folder: runs/train, runs/train2, ...")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@version_option()
def main(config, generated, data_root, log_mel, subset, cache_dir, weights, vggish, resume, epochs, steps_per_epoch,
         lr, batch_clips, micro_batch_clips, checkpoint_blocks, sdpa_attention, log_every, precision, workers, skip_memory_check,
         generated_train, generated_val, fusion_variant, seed, threads, device, project, name, quiet):
    """Train ST-BAVA; validation mIoU each epoch; the best epoch is saved as
    best.safetensors (a bundle avs-run/avs-eval load) and best_authors.pth (the
    authors' state_dict layout), with last.pt to resume and history.jsonl.

    The default recipe is the paper's (frozen SAM encoder and VGGish, Adam 1e-4,
    BCE); a preset file can change it. The bundled demo model is made by:

        avs-train --config avs_engine/models/demo_preset.json --generated
    """
    preset_file = None
    if config is not None and is_preset_file(config):
        preset_file, config = Path(config), None
    try:
        from ..train.api import run_training

        result = run_training(
            preset_file=preset_file, config=config, generated=generated, data_root=data_root, subset=subset, log_mel=log_mel,
            cache_dir=cache_dir, init_weights=weights, vggish=vggish, resume=resume, device=device,
            project=project, name=name, progress=not quiet, check_memory=not skip_memory_check,
            overrides=dict(epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr, batch_clips=batch_clips,
                           micro_batch_clips=micro_batch_clips, checkpoint_blocks=checkpoint_blocks,
                           sdpa_attention=sdpa_attention, log_every=log_every, precision=precision, workers=workers,
                           generated_train=generated_train, generated_val=generated_val,
                           fusion_variant=fusion_variant, seed=seed, threads=threads),
        )
    except AvsError as e:
        echo_err(str(e))
        sys.exit(2)
    click.echo(f"best val mIoU {result.best_miou:.4f}; {len(result.history)} epoch(s) in {result.seconds / 60:.1f} min. "
               f"Results saved to {result.out_dir} (best: {result.best_bundle})")


if __name__ == "__main__":
    main()
