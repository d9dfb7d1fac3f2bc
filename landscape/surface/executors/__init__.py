"""Where the points of a grid are evaluated; :func:`landscape.surface.evaluate.evaluate` runs any of them.

- :mod:`~landscape.surface.executors.local`: every point in this thread;
- :mod:`~landscape.surface.executors.pool`: persistent single-thread worker processes
  (the default on a CPU, when they pay off);
- :mod:`~landscape.surface.executors.ray`: chunks of points as Ray tasks, resumable;
- :mod:`~landscape.surface.executors.vmap`: many points per call with ``torch.func.vmap``
  (the default on a GPU).

An executor has ``target() -> (device, batched)`` (where its points run, so the options are
checked once against it) and ``run(task, plan, grid) -> info``, writing results into the
:class:`~landscape.surface.evaluate.LiveGrid` by position. All of them evaluate with
:mod:`landscape.surface.evaluators`. This package imports nothing at start-up, so a pool
worker (``python -m landscape.surface.executors.pool``) starts quickly.
"""
