"""The command-line reference, ``docs/cli.md``, generated from the click commands themselves.

    python -m avs_engine.cli.reference > docs/cli.md

``tests/cli/test_vocabulary.py`` fails when the file and the commands differ.
"""

from __future__ import annotations

import click

from .options import AliasOption


def commands() -> list[tuple[str, click.Command]]:
    """Every command a user types, by the name they type."""
    from .bench import main as bench
    from .eval import main as eval_
    from .export import main as export
    from .run import main as run
    from .train import main as train

    from .batch import main as batch
    from .serve import main as serve

    out = [("avs-run", run), ("avs-eval", eval_), ("avs-bench", bench), ("avs-train", train), ("avs-export", export)]
    out += [(f"avs-export {name}", cmd) for name, cmd in sorted(export.commands.items())]
    out += [("avs-batch", batch), ("avs-serve", serve)]
    return out


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(p: click.Parameter, ctx: click.Context) -> str:
    if isinstance(p, click.Option) and p.is_flag and not p.count:
        return "flag"
    metavar = p.make_metavar(ctx) if isinstance(p, click.Argument) else (p.metavar or p.type.get_metavar(p, ctx) or p.type.name.upper())
    return metavar


def _default(p: click.Parameter) -> str:
    d = p.default
    if isinstance(p, click.Option) and p.is_flag:
        return (p.opts[-1] if d else p.secondary_opts[-1]) if p.secondary_opts else ""
    if d is None or (isinstance(d, tuple) and not d) or callable(d) or type(d).__name__ == "Sentinel" or "UNSET" in repr(d):
        return ""
    return str(d)


def _names(p: click.Parameter) -> str:
    if isinstance(p, click.Argument):
        return p.human_readable_name
    names = ", ".join(f"`{o}`" for o in p.opts)
    if p.secondary_opts:
        names += " / " + ", ".join(f"`{o}`" for o in p.secondary_opts)
    return names


def _help(p: click.Parameter, cmd: click.Command) -> str:
    if isinstance(p, click.Argument):
        return _cell((cmd.help or "").split("\n\n")[1] if "\n\n" in (cmd.help or "") else "")
    return _cell(p.help or "")


def render() -> str:
    lines = [
        "# Command-line reference",
        "",
        "Every option of every command, generated from the commands themselves by",
        "`python -m avs_engine.cli.reference > docs/cli.md` (a test fails when this page is out of date).",
        "`--help` on any command prints the same text.",
        "",
        "The same concept has the same option everywhere: the model is `--weights` and `--config`, the clip",
        "length `-T/--clip-seconds` (in seconds, one frame per second), the device `--device cpu|cuda|cuda:N`,",
        "the precision `--precision fp32|fp16|bf16` (each backend realises it its own way: torch casts the",
        "model, onnxruntime picks the exported graphs, tensorrt must match its engines), the CPU threads",
        "`--threads N` (0 or unset: each library's default), tolerances `NAME:VALUE` as Polygraphy writes them;",
        "`--version` prints the package version. An option that does not apply to the backend a command runs",
        "on is refused with one `error:` line.",
        "",
    ]
    aliases: list[tuple[str, str, str]] = []
    for name, cmd in commands():
        ctx = click.Context(cmd, info_name=name, **cmd.context_settings)
        lines += [f"## {name}", "", _cell((cmd.help or "").split("\n\n")[0]), ""]
        if isinstance(cmd, click.Group):
            lines += ["Subcommands: " + ", ".join(f"`{name} {n}`" for n in sorted(cmd.commands)) + ".", ""]
        lines += ["| option | value | default | what it does |", "|---|---|---|---|"]
        for p in cmd.get_params(ctx):
            if isinstance(p, AliasOption):
                new = next(q for q in cmd.params if q.name == p.target)
                aliases.append((name, ", ".join(f"`{o}`" for o in p.opts), ", ".join(f"`{o}`" for o in new.opts)))
                continue
            if getattr(p, "hidden", False):
                continue
            lines.append(f"| {_names(p)} | {_cell(_type(p, ctx))} | {_cell(_default(p))} | {_help(p, cmd)} |")
        lines.append("")
    lines += [
        "## Older spellings",
        "",
        "Still accepted, not shown by `--help`; giving both spellings with different values is an error.",
        "",
        "| command | old | now |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {old} | {new} |" for c, old, new in aliases]
    lines += [
        "| avs-export onnx | `--precision both` | `--precision fp32,fp16` |",
        "| avs-export build | `--precision fp16-weak` | `--precision fp16 --weak-typing` |",
        "| avs-export build, avs-export check | `--device N` | `--device cuda:N` |",
        "| avs-export check | `--rtol/--atol NAME=X` | `NAME:X` |",
        "| avs-bench | rows `torch:float32`, `torch:bfloat16`, `torch:float16` | `torch:fp32`, `torch:bf16`, `torch:fp16` |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
