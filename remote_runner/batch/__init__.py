"""The batch: one matrix of runs from its settings to its finished folder.

Owns: the settings and presets (settings, presets), the plan and its order (plan), the durable state
(journal) and the one-runner lock (lock), the admission loop (scheduler), the batch's life around it
(place, claim, hooks, finish, upload, power-off), the free-disk floor (disk), ``status``, the cost
forecast (forecast), the replay pass that confirms a batch's faults (replay) and the refusal to resume a
batch on another worker family (family_check).

May import: every layer below it (placement, experiment, analysis, cloud, common); only the command
line (:mod:`remote_runner.cli`) imports it (checked by the import-linter contract in pyproject.toml).
"""
