"""Write generated sounding-object clips to disk: ``python -m avs_engine.data OUT``.

AVSBench layout (S4- or MS3-like, read back by ``AVSBenchDataset`` and by
``avs-train/avs-eval --data OUT --subset ...``), optionally each clip as a
muxed .mp4 too (for avs-run), and single demo videos.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--subset", type=click.Choice(["s4", "ms3"]), default="ms3", show_default=True)
@click.option("--train", "n_train", type=int, default=0, show_default=True, help="Clips of the train seed range.")
@click.option("--val", "n_val", type=int, default=0, show_default=True)
@click.option("--test", "n_test", type=int, default=0, show_default=True)
@click.option("--mp4", is_flag=True, help="Also write each clip as OUT/mp4/<split>/<name>.mp4 (+ .json ground truth).")
@click.option("--video-seed", type=int, help="Instead: write one video of this seed to OUT/<seed>.mp4 (+ .json ground truth).")
@click.option("--seconds", type=int, default=8, show_default=True, help="Length of --video-seed videos.")
@click.option("--video-name", help="File name (without .mp4) of the --video-seed video; default: the seed.")
def main(out, subset, n_train, n_val, n_test, mp4, video_seed, seconds, video_name):
    """Generate clips (seeds decide everything; train/val/test use disjoint seed ranges)."""
    from tqdm import tqdm

    from .avsbench import write_split
    from .generator import generate_clip, split_seeds
    from .video import write_generated_video

    out.mkdir(parents=True, exist_ok=True)
    if video_seed is not None:
        path = out / f"{video_name or video_seed}.mp4"
        facts = write_generated_video(path, video_seed, seconds)
        click.echo(f"wrote {path}: objects {', '.join(facts['objects'])}")
        return
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if not n:
            continue
        seeds = split_seeds(split, n)
        clips = (generate_clip(s) for s in tqdm(seeds, desc=split, unit="clip", leave=False))
        write_split(out, subset, split, clips)
        if mp4:
            (out / "mp4" / split).mkdir(parents=True, exist_ok=True)
            for s in seeds:
                write_generated_video(out / "mp4" / split / f"gen_{s:08d}.mp4", s, 5, grid="vggish")
        click.echo(f"{split}: {n} clips")
    click.echo(f"Results saved to {out}")


if __name__ == "__main__":
    main()
