"""The bottom layer: small helpers every layer shares, with no knowledge of batches or experiments.

Owns: the one way to run a subprocess (process), time behind small functions (clock), JSON status files
written whole (jsonfile), the runner's exit codes (exit_codes) and Docker's size notation (sizes).

May import: the standard library and third-party packages only, never another remote_runner layer
(checked by the import-linter contract in pyproject.toml).
"""
