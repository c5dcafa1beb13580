"""Loading a big checkpoint holds one copy of the weights, not two (meta build + mmap + assign)."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from avs_engine.reference import build_model, load_checkpoint
    def peak_gb():
        return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1e6
    torch.ones(1)  # torch's own start-up memory is not the checkpoint's
    base = peak_gb()
    m = build_model("vit_b", device="meta")
    load_checkpoint(m, sys.argv[1], vggish=sys.argv[2])
    with torch.no_grad():
        total = sum(float(p.sum()) for p in m.parameters())  # touch every weight
    print(base, peak_gb())
    """
)


@pytest.mark.slow
def test_vit_b_checkpoint_is_held_once(tmp_path):
    import os

    import torch

    from avs_engine.reference import build_model

    m = build_model("vit_b", seed=0)
    sd = m.state_dict()
    ck, vg = tmp_path / "vit_b.pth", tmp_path / "vggish.pth"
    torch.save({k: v for k, v in sd.items() if not k.startswith("audio_backbone.")}, ck)
    torch.save({k[len("audio_backbone."):]: v for k, v in sd.items() if k.startswith("audio_backbone.")}, vg)
    del m, sd
    weights_gb = (os.path.getsize(ck) + os.path.getsize(vg)) / 1e9
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(ck), str(vg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    base, peak = map(float, r.stdout.split())
    # one copy of the weights plus slack; two copies would be ~2x weights_gb
    assert peak - base < 1.35 * weights_gb, (base, peak, weights_gb)
