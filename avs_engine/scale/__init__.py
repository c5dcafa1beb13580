"""Scale-out: ``avs-batch`` (a Ray Data job over many videos) and ``avs-serve`` (a Ray Serve HTTP service).

The only package that imports Ray (an optional extra: ``pip install
'avs-engine[ray]'``), and only in the modules that need it (:mod:`.job`,
:mod:`.stages`, :mod:`.serve_app`); the rest (inputs, output folder,
batched model step, resources) is plain Python and tested without a cluster.
Only the command line (``avs_engine.cli``) imports this package. Both
commands reuse the runtime's three pieces: the clip source runs in CPU tasks,
the model step in actors (or Serve replicas) that batch frames of several
clips through the image encoder, the writer per video. How to run and size
them: ``docs/scale.md``.
"""
