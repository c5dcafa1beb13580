"""Media from strangers (avs-serve's uploads and sources, avs-batch's URLs), for the runtime's callers.

``with untrusted(path): ...`` makes every open of ``path`` inside the block (the clip source's, the
writer's overlay) use the strict policy of ``io.open_policy``: the file protocol only and the accepted
containers, so a playlist or concat list is refused before anything it names is read.
"""

from ..io.open_policy import ACCEPTED_FORMATS, strict as untrusted

__all__ = ["ACCEPTED_FORMATS", "untrusted"]
