"""Research protocols by name: ``run --preset NAME`` (or ``preset`` in the config file or the stack).

A preset is data: the settings it makes the defaults (the config file and flags still override each
of them), and what it cannot set, said in words: which tool versions differ from the paper's and
why. :func:`protocol` is the block plan.json records: the preset, its settings, which of them the
batch overrode (and with what), the shuffle and the seed.

Facts are from the papers' public artifacts (../shared/REFERENCE.md, "Research protocol facts"):

- ``restgym``: RESTgym (SeUniVr/RESTgym v2, restgym/restgym v3): 10 runs of 1 hour per tool x API,
  8 CPUs and 16 GB per container, its verification thresholds (130 requests per budget-minute, 90 %
  request span, 12 coverage samples per minute: our defaults, remote_runner/analysis/verification.py),
  Schemathesis with one worker and ``--max-examples 1500 --no-shrink``, run order shuffled.
- ``llamaresttest-fse25``: what the LlamaRestTest artifact (codingsoo/LlamaRestTest) states: 10
  runs of 1 hour, the tools of its comparison that we have images for. It is a comparison on the
  RESTgym benchmark APIs (ours), not a replication of its services (its own set of services, some of
  them online APIs, run outside containers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Schemathesis as RESTgym runs it (read by tools/schemathesis/entrypoint.sh)
RESTGYM_SCHEMATHESIS_ENV = {
    "SCHEMATHESIS_WORKERS": "1",
    "SCHEMATHESIS_ARGS": "--max-examples 1500 --no-shrink",
}


@dataclass(frozen=True)
class VersionNote:
    tool: str
    ours: str
    paper: str
    why: str


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    #: settings (names of remote_runner.batch.settings.KEYS) and values as a config file gives them
    settings: Mapping[str, Any]
    versions: tuple[VersionNote, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


_EVOMASTER_WHY = (
    "tools/evomaster-bb builds FROM the published webfuzzing/evomaster image its EVOMASTER_IMAGE build "
    "argument names (v3.4.0 by default, the version this harness was built and tested with); another "
    'version is a stack or config setting: tool_build_args {"evomaster-bb": {"EVOMASTER_IMAGE": '
    '"webfuzzing/evomaster:<tag>"}}, and the run records the build arguments it used'
)

PRESETS: dict[str, Preset] = {
    "restgym": Preset(
        name="restgym",
        title="RESTgym's protocol (SeUniVr/RESTgym v2, restgym/restgym v3)",
        settings={
            "runs": 10,
            "budget_seconds": 3600,
            "cpus_per_container": 8,
            "memory_per_container": "16g",
            "shuffle": True,
            "tool_env": {"schemathesis": dict(RESTGYM_SCHEMATHESIS_ENV)},
        },
        versions=(
            VersionNote(
                "schemathesis",
                "4.32.5",
                "4.7.5",
                "tools/schemathesis/requirements.txt pins 4.32.5, the version the harness's image tests "
                "ran; the options RESTgym passes (one worker, --max-examples 1500 --no-shrink) exist in "
                "both and are what the preset sets",
            ),
            VersionNote("evomaster-bb", "v3.4.0", "v4.0.0 (RESTgym's image)", _EVOMASTER_WHY),
        ),
        notes=(
            "Verification thresholds are RESTgym v2's (130 requests/min, 90 % span, 12 samples/min), "
            "the harness's defaults; as in RESTgym v3, a run below the rate or span thresholds is kept "
            "and flagged, and a run whose recording or sampling broke is re-run.",
        ),
    ),
    "llamaresttest-fse25": Preset(
        name="llamaresttest-fse25",
        title="LlamaRestTest (FSE 2025) artifact's protocol, on the RESTgym benchmark APIs",
        settings={
            "runs": 10,
            "budget_seconds": 3600,
            "tools": ["llamaresttest", "arat-rl", "evomaster-bb", "schemathesis"],
            "shuffle": True,
        },
        versions=(
            VersionNote(
                "llamaresttest",
                "the models in models_dir (sha256 recorded per run)",
                "repository: Llama-2-7B-chat Q6_K; paper: Llama3-8B 8-bit",
                "the artifact and the paper disagree; each run's metadata.json names the model files "
                "it mounted by sha256 and size, so a batch says which it used",
            ),
            VersionNote(
                "evomaster-bb", "v3.4.0", "1.5.0 (setup.sh); ARAT-RL's artifact 1.6.0", _EVOMASTER_WHY
            ),
        ),
        notes=(
            "A comparison on the RESTgym benchmark APIs, not a replication of LlamaRestTest's "
            "services; the artifact runs its tools outside containers, we run each in its own "
            "container of 8 CPUs and 16 GB.",
            "Shuffled run order is ours (RESTgym's practice), so the same runs do not always share "
            "a machine.",
        ),
    ),
}


def protocol(settings: Any) -> dict[str, Any]:
    """plan.json's ``protocol`` block for these (merged) settings: the preset, its settings, what the
    batch overrode (``{key: {"preset": ..., "used": ...}}``), the shuffle and its seed."""
    from remote_runner.batch import settings as schema

    written = settings.to_json()
    block: dict[str, Any] = {
        "preset": settings.preset,
        "shuffle": settings.shuffle,
        "shuffle_seed": settings.seed if settings.shuffle else None,
        "seed": settings.seed,
    }
    if settings.preset is None:
        return block
    preset = PRESETS[settings.preset]
    wanted: dict[str, Any] = {}
    overridden: dict[str, Any] = {}
    for key, value in preset.settings.items():
        setting = schema.setting(key)
        typed = setting.read(value)
        as_json = setting.dump(typed) if setting.dump is not None else typed
        wanted[key] = as_json
        if getattr(settings, key) != typed:
            overridden[key] = {"preset": as_json, "used": written[key]}
    block.update(
        title=preset.title,
        preset_settings=wanted,
        overridden=overridden,
        versions=[{"tool": v.tool, "ours": v.ours, "paper": v.paper, "why": v.why} for v in preset.versions],
        notes=list(preset.notes),
    )
    return block
