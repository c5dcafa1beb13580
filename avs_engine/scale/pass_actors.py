"""The first pass's inference actors, each on a roster, so that the driver can end them when the pass is over.

Ray Data ends its actors by dropping their handles and leaves the rest to Ray's reference counting. An actor that
died and was being restarted when its dataset finished can outlive that: on the tests' 2-CPU Ray it was still alive
minutes later, holding its CPU, and the second pass (whose actor needs that CPU) waited for it. With the roster the
driver kills every actor of the pass explicitly (``end_pass``), whatever became of their handles.
"""

from __future__ import annotations

from .stages import InferenceActor


class Roster:
    """Handles of the actors of one pass (an actor restarted by Ray signs in again: same actor, kept once)."""

    def __init__(self) -> None:
        self.handles: dict[str, object] = {}

    def sign_in(self, actor_id: str, handle) -> None:
        self.handles[actor_id] = handle

    def all(self) -> list:
        return list(self.handles.values())


class RosteredInferenceActor(InferenceActor):
    """:class:`~avs_engine.scale.stages.InferenceActor` that signs in on ``roster`` (a :class:`Roster` actor)."""

    def __init__(self, spec, max_frames: int | None = None, roster=None) -> None:
        super().__init__(spec, max_frames)
        if roster is not None:
            import ray

            ctx = ray.get_runtime_context()
            ray.get(roster.sign_in.remote(ctx.get_actor_id(), ctx.current_actor))


def new_roster():
    """A roster actor (it asks for no resources)."""
    import ray

    return ray.remote(num_cpus=0)(Roster).remote()


def end_pass(roster) -> int:
    """Kill every actor on ``roster`` and the roster itself; returns how many actors there were."""
    import ray

    handles = ray.get(roster.all.remote())
    for h in handles:
        ray.kill(h, no_restart=True)
    ray.kill(roster, no_restart=True)
    return len(handles)


__all__ = ["Roster", "RosteredInferenceActor", "end_pass", "new_roster"]
