"""The engine path never imports torch (STYLE habit 8)."""

import subprocess
import sys


def test_runtime_and_io_import_without_torch():
    code = (
        "import sys\n"
        "import avs_engine, avs_engine.spec, avs_engine.config, avs_engine.errors\n"
        "import avs_engine.runtime, avs_engine.backends, avs_engine.io\n"
        "import avs_engine.io.clips, avs_engine.io.preprocess, avs_engine.io.postprocess\n"
        "import avs_engine.io.writers, avs_engine.io.rundir, avs_engine.io.logmel\n"
        "from avs_engine.backends import available_backends\n"
        "bad = [m for m in ('torch', 'torchvision', 'segment_anything', 'cv2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
