"""One vocabulary across the commands: the same concept has the same option name and type everywhere,
every option has help text, every command has --version, docs/cli.md is generated from the commands,
and the old spellings still work."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from avs_engine import __version__
from avs_engine.cli.options import AliasOption, DeviceType, PrecisionType, ThreadsType, _resolve_aliases
from avs_engine.cli.reference import commands, render

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = dict(commands())

# concept -> (option strings, type check, the commands that must have it)
CONCEPTS = {
    "weights": (["--weights"], lambda t: isinstance(t, click.Path) and not t.dir_okay,
                ["avs-run", "avs-eval", "avs-bench", "avs-train", "avs-export onnx", "avs-export build"]),
    "config": (["--config"], lambda t: t is click.STRING,
               ["avs-run", "avs-eval", "avs-bench", "avs-train", "avs-export onnx", "avs-export build"]),
    "clip_seconds": (["-T", "--clip-seconds"], lambda t: isinstance(t, click.IntRange) and (t.min, t.max) == (1, 64),
                     ["avs-run", "avs-bench", "avs-export onnx", "avs-export check"]),
    "device": (["--device"], lambda t: isinstance(t, DeviceType),
               ["avs-run", "avs-eval", "avs-bench", "avs-train", "avs-export build", "avs-export check"]),
    "precision": (["--precision"], lambda t: isinstance(t, PrecisionType), ["avs-run", "avs-eval", "avs-export onnx", "avs-export build"]),
    "threads": (["--threads"], lambda t: isinstance(t, ThreadsType), ["avs-run", "avs-eval", "avs-bench", "avs-train", "avs-export onnx"]),
}
OLD_SPELLINGS = {"--T", "--frames", "--verify-frames", "--preset", "--preset-file", "--dtype", "--init"}


def _visible(cmd):
    return [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_shared_concepts_have_one_name_and_type(concept):
    opts, type_ok, required = CONCEPTS[concept]
    having = {}
    for name, cmd in COMMANDS.items():
        for p in _visible(cmd):
            if set(p.opts) & set(opts) or p.name == concept:
                having[name] = p
    assert set(required) <= set(having), f"--{concept} missing on {sorted(set(required) - set(having))}"
    for name, p in having.items():
        assert p.opts == opts, (name, p.opts)
        assert p.name == concept, (name, p.name)
        assert type_ok(p.type), (name, p.type)


def test_no_visible_old_spelling_and_every_option_has_help():
    for name, cmd in COMMANDS.items():
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.name == "help":
                continue
            assert (p.help or "").strip(), f"{name} {p.opts[0]} has no help text"
            if not p.hidden:
                assert not set(p.opts) & OLD_SPELLINGS, (name, p.opts)
            else:
                assert isinstance(p, AliasOption), (name, p.opts)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_version_on_every_command(name):
    r = CliRunner().invoke(COMMANDS[name], ["--version"])
    assert r.exit_code == 0 and r.output.strip().endswith(__version__), r.output


def test_cli_reference_is_up_to_date():
    doc = (ROOT / "docs" / "cli.md").read_text()
    assert doc == render(), "docs/cli.md is out of date: python -m avs_engine.cli.reference > docs/cli.md"


def _params(name, args):
    cmd = COMMANDS[name]
    ctx = cmd.make_context(name, list(args))
    _resolve_aliases(cmd, ctx)
    return ctx.params


def test_old_spellings_map_onto_the_new_options(tmp_path):
    p = _params("avs-bench", ["--preset", "vit_b", "--T", "3"])
    assert (p["config"], p["clip_seconds"]) == ("vit_b", 3) and not any(k.startswith("_alias") for k in p)
    p = _params("avs-train", ["--preset-file", "x.json", "--init", "w.pt"])
    assert (p["config"], str(p["weights"])) == ("x.json", "w.pt")
    p = _params("avs-export onnx", ["--out", "o", "--verify-frames", "4", "--precision", "both"])
    assert p["clip_seconds"] == 4 and p["precision"] == ("both",)
    p = _params("avs-export onnx", ["--out", "o", "--precision", "fp16,fp32"])
    assert p["precision"] == ("fp16", "fp32")
    p = _params("avs-export check", ["--frames", "4", "--device", "1", "--atol", "enc:0.1"])
    assert (p["clip_seconds"], p["device"]) == (4, "cuda:1")
    p = _params("avs-export build", ["--onnx-dir", "d", "--precision", "fp16-weak", "--device", "0"])
    assert (p["precision"], p["device"]) == ("fp16-weak", "cuda:0")
    p = _params("avs-run", ["v.mp4", "--dtype", "bfloat16", "--threads", "0"])
    assert p["precision"] == "bf16" and p["threads"] is None  # 0: the library's default
    p = _params("avs-eval", ["--precision", "float16", "--device", "CUDA:2"])
    assert (p["precision"], p["device"]) == ("fp16", "cuda:2")


def test_both_spellings_with_different_values_is_a_usage_error():
    with pytest.raises(click.UsageError, match="old spelling"):
        _params("avs-bench", ["--T", "3", "-T", "4"])
    assert _params("avs-bench", ["--T", "3", "-T", "3"])["clip_seconds"] == 3


@pytest.mark.parametrize("bad", [["--device", "gpu"], ["--precision", "int4"], ["--threads", "-1"], ["-T", "0"]])
def test_bad_values_are_usage_errors(bad):
    r = CliRunner().invoke(COMMANDS["avs-run"], ["v.mp4", *bad])
    assert r.exit_code == 2 and "Invalid value" in r.output
