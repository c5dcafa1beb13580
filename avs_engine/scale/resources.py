"""How a batch job asks the cluster for resources: inference actors, decode tasks and writer tasks.

Ray schedules by logical resources. An actor pool that asks for every CPU
starves the decode tasks feeding it and the job hangs without a word, so on
CPU the actors together leave at least one decode task's worth of CPU free.
Decode tasks and inference actors also never ask for the same resources
(the decode tasks add a memory request): Ray Data would otherwise fuse the
decoding into the actors, where it would run one video at a time instead of
beside the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


class ResourceError(ValueError):
    """The asked-for actors do not fit the cluster."""


@dataclass(frozen=True)
class ResourcePlan:
    """``actors`` inference actors, each holding ``actor_cpus`` CPUs and ``actor_gpus`` GPUs (logical) and running
    ONNX Runtime with ``threads`` intra-op threads (None: its own choice); decode tasks ask for ``decode_cpus``,
    writer tasks for ``write_cpus``; ``videos_per_batch`` videos go to an actor at once. ``decode_memory_mb``:
    what a decode task reserves (it holds one video's squashed frames, 150 KB per second at 224x224, and a decoder)."""

    actors: int
    actor_cpus: float
    actor_gpus: float
    threads: int | None
    decode_cpus: float
    write_cpus: float
    videos_per_batch: int
    decode_memory_mb: int = 512

    def to_dict(self) -> dict:
        return asdict(self)


def plan_resources(cluster_cpus: float, cluster_gpus: float = 0.0, *, device: str = "cpu", actors: int | None = None,
                   actor_cpus: float | None = None, actor_gpus: float | None = None, threads: int | None = None,
                   decode_cpus: float | None = None, write_cpus: float | None = None,
                   videos_per_batch: int | None = None, decode_memory_mb: int = 512) -> ResourcePlan:
    """Defaults for what was not given, checked against the cluster's CPUs and GPUs.

    On a GPU (``device`` cuda): one GPU and one CPU per actor, one actor per GPU.
    On CPU: one actor per 4 CPUs (at least one), each with the CPUs left after
    one decode task, split evenly, as ONNX Runtime threads.
    """
    cpus = float(cluster_cpus)
    small = cpus < 4
    decode_cpus = float(decode_cpus if decode_cpus is not None else (0.5 if small else 1.0))
    write_cpus = float(write_cpus if write_cpus is not None else (0.25 if small else 0.5))
    gpu = device != "cpu" or bool(actor_gpus)
    if gpu:
        actor_gpus = float(actor_gpus if actor_gpus is not None else 1.0)
        if actor_gpus <= 0:
            raise ResourceError(f"--gpus-per-actor must be > 0 on {device}")
        if actors is None:
            actors = max(1, int(cluster_gpus // actor_gpus))
        if actors * actor_gpus > cluster_gpus + 1e-9:
            raise ResourceError(f"{actors} actor(s) x {actor_gpus:g} GPU need {actors * actor_gpus:g} GPUs; "
                                f"the cluster has {cluster_gpus:g}")
        actor_cpus = float(actor_cpus if actor_cpus is not None else min(1.0, max(0.25, (cpus - decode_cpus) / actors)))
    else:
        actor_gpus = 0.0
        if actors is None:
            actors = max(1, int(cpus // 4))
        if threads is None:
            threads = max(1, int((cpus - decode_cpus) // actors))
        if actor_cpus is None:
            actor_cpus = min(float(threads), max(0.25, (cpus - decode_cpus) / actors))
    if actors < 1:
        raise ResourceError(f"--actors must be >= 1, got {actors}")
    if actors * actor_cpus + decode_cpus > cpus + 1e-9:
        raise ResourceError(f"{actors} actor(s) x {actor_cpus:g} CPU leave less than one decode task's {decode_cpus:g} CPU "
                            f"of the cluster's {cpus:g}: the job would wait forever; lower --actors or --cpus-per-actor")
    return ResourcePlan(actors=int(actors), actor_cpus=float(actor_cpus), actor_gpus=float(actor_gpus),
                        threads=threads, decode_cpus=decode_cpus, write_cpus=write_cpus,
                        videos_per_batch=int(videos_per_batch or 4), decode_memory_mb=int(decode_memory_mb))


__all__ = ["ResourceError", "ResourcePlan", "plan_resources"]
