"""Cohort runs: every selected item through a pipeline of steps, resumably, on any executor.

Entry point: :func:`kneescope.cohort.runner.run_pipeline` with a
:class:`~kneescope.cohort.pipeline_config.PipelineConfig`. Modules: ``step`` (the Step
protocol, ``BaseStep``), ``step_registry`` (steps by entry point), ``result_schema``
(declared result columns), ``builtin_steps`` (small benchmark steps), ``item`` and
``item_sources`` (what runs), ``manifest`` (per-item state, SQLite), ``item_task`` (worker
side), ``executors`` (in-process, Dask, Slurm/PBS, GPU), ``results_table``, ``run_status``,
``run_plan`` (dry runs), ``run_lock``. Importing this package imports nothing heavy.
"""
