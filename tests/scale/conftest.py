"""Fixtures of the scale-out tests: ONE local Ray for all of them, generated videos, avs-run's masks.

Ray starts with 2 logical CPUs and 1 logical GPU (no GPU needed: Ray's resources are
counts) and a small object store, is shared by every test here that asks for it, and
stops when the last test of this folder is done (the rest of the suite runs without it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

RAY_MISSING = "ray is not installed: pip install 'avs-engine[ray]' (CI installs it)"

# name -> (seconds, (width, height)); the demo model's own kind of video (generated sounding objects).
GOOD = {f"gen{i:02d}": (s, size) for i, (s, size) in enumerate(
    [(2, (64, 48)), (3, (96, 64)), (4, (64, 48)), (5, (80, 48)), (6, (96, 64)),
     (2, (96, 64)), (3, (64, 48)), (4, (80, 48)), (5, (64, 48)), (6, (64, 48))])}
BROKEN = {"truncated": "not a readable media file", "no_audio": "no audio track"}


@pytest.fixture(scope="package")
def ray_cluster():
    """The tests' Ray (started once, shut down after this folder's tests); yields its address for a second driver."""
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    if not ray.is_initialized():
        # Workers at the tests' own priority, as avs-batch starts them: at Ray's default niceness (15) a loaded
        # machine starves them (an actor restart took minutes at load 13 on 2 cores).
        kwargs = dict(num_cpus=2, num_gpus=1, include_dashboard=False, object_store_memory=400 << 20,
                      log_to_driver=False, configure_logging=False, _system_config={"worker_niceness": 0})
        try:
            ray.init(**kwargs)
        except Exception as e:   # Ray gives its raylet 30 s to register (fixed in its code): at load 20 on 2 cores
            if "timed out during startup" not in str(e):   # that can pass; one more try, then the error stands
                raise
            ray.shutdown()
            ray.init(**kwargs)
    yield ray.get_runtime_context().gcs_address
    try:
        from ray import serve

        serve.shutdown()
    except Exception:
        pass
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_graphs() -> Path:
    from avs_engine.models import DEMO_GRAPHS

    if not (DEMO_GRAPHS / "manifest.json").is_file():
        pytest.skip(f"the demo model's ONNX graphs are missing ({DEMO_GRAPHS})")
    return DEMO_GRAPHS


@pytest.fixture(scope="session")
def demo_spec(demo_graphs):
    from avs_engine.backends.model_spec import ModelSpec

    return ModelSpec.choose(engine_dir=demo_graphs, threads=1)


@pytest.fixture(scope="session")
def demo_runner(demo_spec):
    return demo_spec.create().activate()


@pytest.fixture(scope="session")
def scale_videos(tmp_path_factory) -> dict[str, Path]:
    """10 generated videos with sound (2-6 s, 8 fps, small frames) and 2 broken ones: name -> path."""
    from avs_engine.data.video import write_generated_video
    from tests.media_factory import make_silent_video

    root = tmp_path_factory.mktemp("scale_videos")
    out = {}
    for i, (name, (seconds, size)) in enumerate(GOOD.items()):
        out[name] = root / f"{name}.mp4"
        write_generated_video(out[name], seed=30_000_100 + i, seconds=seconds, fps=8, size=size, crf=28)
        (root / f"{name}.json").unlink(missing_ok=True)  # the generator's ground truth: not a video
    data = out["gen09"].read_bytes()
    out["truncated"] = root / "truncated.mp4"
    out["truncated"].write_bytes(data[: len(data) // 3])  # an interrupted copy
    out["no_audio"] = root / "no_audio.mp4"
    make_silent_video(out["no_audio"], seconds=3, fps=8, size=(64, 48))
    return out


def read_png_masks(folder: Path) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(p)) > 0 for p in sorted((folder / "masks").glob("*.png"))]


@pytest.fixture(scope="session")
def avs_run_masks(scale_videos, demo_graphs, tmp_path_factory) -> dict[str, list[np.ndarray]]:
    """The masks the avs-run command writes (same model and backend as the jobs) for every good video: name ->
    masks per second. avs-batch and avs-serve must give these bit for bit."""
    import json

    from click.testing import CliRunner

    from avs_engine.cli.run import main

    project = tmp_path_factory.mktemp("avs_run")
    videos = [str(scale_videos[name]) for name in GOOD]
    res = CliRunner().invoke(main, [*videos, "--engine-dir", str(demo_graphs), "--threads", "1", "--no-overlay",
                                    "--project", str(project), "--json", "-q"])
    assert res.exit_code == 0, res.output
    docs = json.loads(res.stdout)["videos"]
    out = {}
    for name, doc in zip(GOOD, docs):
        out[name] = read_png_masks(Path(doc["output_dir"]))
        assert len(out[name]) == doc["n_seconds"] == GOOD[name][0]
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_with_repo() -> dict:
    """The environment for a subprocess that imports this checkout's avs_engine and tests."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
