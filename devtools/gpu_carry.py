"""The GPU check, carried onto a bare GPU machine with no network: wheels prepared here, installed there.

A typical lent GPU machine has Python 3.12 with a CUDA build of PyTorch, NumPy, Pillow, click, tqdm,
safetensors, torchvision, ONNX and ONNX Runtime preinstalled, and nothing of ours: no PyAV, no
segment-anything, no avs-engine. The repository travels with the wheels (it is put on the path, not
installed), and the two together must stay under 64 MiB.

Here (network to PyPI)::

    python -m devtools.gpu_carry prepare .gpu_wheels            # manylinux x86_64, CPython 3.12

There (from the repository's root; standard library only, so any python3 runs it)::

    python3 devtools/gpu_carry.py run --wheels .gpu_wheels --out "$OUT"

``run`` installs the wheels with ``pip install --no-index --no-deps --target`` (or, without pip,
unpacks them: a wheel is a zip of its installed files), puts that folder and the repository on
``PYTHONPATH``, and runs ``benchmarks/gpu_check.py`` within ``--budget`` seconds (default 540: a
9-minute slot), writing ``gpu_check.json``, ``gpu_check.md`` and ``gpu_check.log`` into ``--out``.
Arguments after ``--`` go to gpu_check (``-- --dry-run --quick`` rehearses on a CPU).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT_MIB = 64.0  # what travels to the GPU machine: the repository's tracked files plus the wheels
# What the GPU machines lack that gpu_check imports (the rest of avs-engine's needs are preinstalled there).
CARRIED = ("av", "segment-anything")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def _mib(n: int) -> float:
    return n / 2**20


def tracked_bytes(repo: Path = REPO) -> int:
    """Bytes of the repository's tracked files (what travels of the repository)."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True).stdout
    total = 0
    for name in out.decode().split("\0"):
        path = repo / name
        if name and path.is_file():
            total += path.stat().st_size
    return total


def wheel_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.whl"))


def pinned(name: str) -> str:
    """``name==version`` as installed here (the versions the test suite ran), or ``name`` alone."""
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def download(folder: Path, python_version: str = "3.12", packages=CARRIED) -> int:
    """The wheels of ``packages`` for ``python_version`` on manylinux x86_64 into ``folder`` (emptied
    of wheels first: two versions of one package stop pip's install there); 1 if pip fails."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "--dest", str(folder)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    cmd += [pinned(p) for p in packages]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        lines = [line for line in r.stderr.splitlines() if line.startswith("ERROR")] or r.stderr.splitlines()[-1:]
        print(f"gpu_carry: pip download failed: {' '.join(lines)}", file=sys.stderr)
        return 1
    return 0


def check_size(folder: Path, limit_mib: float = LIMIT_MIB) -> int:
    """Print what travels; 1 if the wheels plus the repository's tracked files exceed ``limit_mib``."""
    wheels, repo = wheel_bytes(folder), tracked_bytes()
    total = _mib(wheels + repo)
    for w in sorted(folder.glob("*.whl")):
        print(f"  {w.name}  {_mib(w.stat().st_size):.1f} MiB")
    print(f"gpu_carry: wheels {_mib(wheels):.1f} MiB + tracked files {_mib(repo):.1f} MiB = {total:.1f} MiB "
          f"(limit {limit_mib:.0f} MiB)")
    if total > limit_mib:
        print(f"gpu_carry: {total:.1f} MiB would not travel (limit {limit_mib:.0f} MiB)", file=sys.stderr)
        return 1
    return 0


def prepare(folder: Path, python_version: str = "3.12", packages=CARRIED, limit_mib: float = LIMIT_MIB) -> int:
    """:func:`download`, then :func:`check_size`; 0 when the folder is ready to travel."""
    return download(folder, python_version, packages) or check_size(folder, limit_mib)


def install(wheels: Path, site: Path, log) -> None:
    """The wheels into ``site``: pip without an index where pip exists, else unpacked as they are."""
    files = sorted(Path(wheels).glob("*.whl"))
    if not files:
        raise SystemExit(f"gpu_carry: no wheels in {wheels} (prepare them here: python -m devtools.gpu_carry prepare DIR)")
    site.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, files)],
                       capture_output=True, text=True)
    if r.returncode == 0:
        print(f"gpu_carry: installed {len(files)} wheels into {site} with pip", file=log, flush=True)
        return
    print(f"gpu_carry: pip could not install ({(r.stderr.strip().splitlines() or ['no pip'])[-1]}); unpacking the wheels",
          file=log, flush=True)
    for f in files:
        with zipfile.ZipFile(f) as z:
            z.extractall(site)


class Tee:
    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, text: str) -> None:
        for s in self.streams:
            s.write(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def run(wheels: Path, out: Path, site: Path, budget_s: float, extra: list[str]) -> int:
    """Install, then gpu_check within ``budget_s`` seconds; its exit code (124 when stopped at the limit)."""
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gpu_check.log", "w") as logfile:
        log = Tee(sys.stdout, logfile)
        install(wheels, site, log)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        left = budget_s - (time.monotonic() - t0)
        # gpu_check stops starting sections a margin before the hard limit, so a section in flight can finish
        cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--time-budget", f"{max(left - 90, 10):.0f}",
               "--json", str(out / "gpu_check.json"), "--markdown", str(out / "gpu_check.md"), *extra]
        print(f"gpu_carry: {' '.join(cmd)} (hard limit {left:.0f} s)", file=log, flush=True)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        pump = threading.Thread(target=lambda: [log.write(line) for line in proc.stdout], daemon=True)
        pump.start()
        try:
            code = proc.wait(timeout=max(t0 + budget_s - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            proc.kill()
            proc.wait()
        pump.join(timeout=5)
        if code is None:
            print(f"gpu_carry: gpu_check stopped at the {budget_s:.0f} s limit; the sections it finished are in "
                  f"{out / 'gpu_check.json'}", file=log, flush=True)
            return 124
        print(f"gpu_carry: gpu_check exited {code} after {time.monotonic() - t0:.0f} s", file=log, flush=True)
        return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="gpu_carry", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="download the wheels a bare GPU machine lacks (here, with network)")
    pp.add_argument("folder", type=Path)
    pp.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    pp.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    pr = sub.add_parser("run", help="install the wheels and run gpu_check (there, without network)")
    pr.add_argument("--wheels", type=Path, required=True)
    pr.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json, .md and .log")
    pr.add_argument("--site", type=Path, default=Path("/tmp/avs_gpu_site"), help="where the wheels are installed")
    pr.add_argument("--budget", type=float, default=540.0, help="seconds for install plus gpu_check (default 540)")
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        return prepare(args.folder, args.python_version, limit_mib=args.limit_mib)
    return run(args.wheels, args.out, args.site, args.budget, extra)


if __name__ == "__main__":
    raise SystemExit(main())
