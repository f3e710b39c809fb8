"""``scan`` and ``trend``: many bundles mapped one by one, reduced into one report.

- :mod:`yolodbg.scan.executor`: where a map runs, behind one protocol (``Job``, ``Executor``):
  ``LocalExecutor`` (this process or a local process pool) and ``drive`` (item order, Ctrl-C);
- :mod:`yolodbg.scan.run`: the files (``expand``), the job (``ScanJob``), the per-bundle map
  (``process``) and ``scan`` (the map on an executor, reduced into a ``ScanAggregate``);
- :mod:`yolodbg.scan.ray_pool`: an executor on a Ray cluster (``RayPool``);
- :mod:`yolodbg.scan.records`: what the map returns per bundle (``BundleRecord``, ``GtRecord``);
- :mod:`yolodbg.scan.aggregate`: the reduce into the ``yolodbg.scan/1`` report (``ScanAggregate``);
- :mod:`yolodbg.scan.trend`: checkpoints over a run into the ``yolodbg.trend/1`` report.

This ``__init__`` imports nothing, so a spawned worker imports only what it uses.
"""
