"""The startup script: its full rendered text, shellcheck, and values that stay inert."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from remote_runner.common.process import execute
from stacks.startup import TEMPLATE_PATH, StartupParams, render_startup_script

GOLDEN = Path(__file__).parent / "golden" / "startup.sh"

PARAMS = StartupParams(
    models_bucket="lab-llm-models",
    models_path="LlamaRestTest",
    ssh_user="llamaresttest",
    client_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClientKeyForTheGoldenTestOnly0000000000",
    host_private_key=(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
        "-----END OPENSSH PRIVATE KEY-----"
    ),
    host_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTheGoldenTestOnly00000000000000",
)


def test_rendered_script_matches_golden_file() -> None:
    text = render_startup_script(PARAMS)
    if os.environ.get("LLAMARESTTEST_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
        pytest.fail(f"rewrote {GOLDEN}; review the diff, then run again without LLAMARESTTEST_UPDATE_GOLDEN")
    assert text == GOLDEN.read_text(), (
        "the rendered startup script changed; if on purpose, rerun with LLAMARESTTEST_UPDATE_GOLDEN=1"
    )


def test_rendered_script_passes_shellcheck(tmp_path: Path) -> None:
    script = tmp_path / "startup.sh"
    script.write_text(render_startup_script(PARAMS))
    result = execute(["shellcheck", "--shell=bash", "--severity=style", str(script)], timeout=60)
    assert result.returncode != 127, "shellcheck is not installed (scripts/bootstrap.sh installs it)"
    assert result.ok, result.output


def test_values_are_shell_quoted_and_reach_the_script_unchanged(tmp_path: Path) -> None:
    hostile = StartupParams(
        models_bucket="b'; touch INJECTED; echo '",
        models_path="path with spaces/$(touch INJECTED)",
        ssh_user="`touch INJECTED`",
        client_public_key='ssh-ed25519 AAAA "quoted" $HOME',
        host_private_key="line one\nline 'two'\n",
        host_public_key="ssh-ed25519 AAAA;touch INJECTED",
        model_files=("a b.gguf", "$x.gguf"),
    )
    text = render_startup_script(hostile)
    # Only the assignments: the rest of the script needs a real VM.
    assignments = text[: text.index("PACKAGES=")]
    probe = tmp_path / "probe.sh"
    probe.write_text(
        assignments
        + 'printf "%s\\0" "$MODELS_BUCKET" "$MODELS_PATH" "$SSH_USER" "$CLIENT_PUBLIC_KEY" '
        + '"$HOST_PRIVATE_KEY" "$HOST_PUBLIC_KEY" "${MODEL_FILES[@]}"\n'
    )
    result = execute(["bash", str(probe)], timeout=30, cwd=tmp_path)
    assert result.ok, result.output
    assert result.output.split("\0")[:-1] == [
        hostile.models_bucket,
        hostile.models_path,
        hostile.ssh_user,
        hostile.client_public_key,
        hostile.host_private_key,
        hostile.host_public_key,
        *hostile.model_files,
    ]
    assert not (tmp_path / "INJECTED").exists()


def test_template_and_values_must_agree() -> None:
    template = TEMPLATE_PATH.read_text()
    with pytest.raises(ValueError, match=r"unknown placeholders \['NEW_THING'\]"):
        render_startup_script(PARAMS, template + "X=@NEW_THING@\n")
    with pytest.raises(ValueError, match=r"values never used \['MODELS_BUCKET'\]"):
        render_startup_script(PARAMS, template.replace("@MODELS_BUCKET@", "fixed"))


def test_script_keeps_its_promises() -> None:
    """The contract with the deploy step and the runner (docs/contracts.md), line by line."""
    text = render_startup_script(PARAMS)
    lines = text.splitlines()
    assert "set -Eeuo pipefail" in lines
    assert "LOG_FILE=/var/log/llamaresttest-startup.log" in lines
    assert "READY_MARKER=/var/lib/llamaresttest/startup.ready" in lines
    assert "FAILED_MARKER=/var/lib/llamaresttest/startup.failed" in lines
    assert "MODELS_DIR=/opt/llamaresttest/models" in lines
    assert "MODEL_FILES=(ex.gguf ipd.gguf)" in lines
    assert "PACKAGES=(docker.io python3-venv python3-pip curl ca-certificates)" in lines
    # The ready marker is the last thing main writes; the failure path writes the other marker.
    main = lines[lines.index("main() {") :]
    writes = [line.strip() for line in main if "write_marker" in line]
    assert writes == ['write_marker "$READY_MARKER" "$(date -u +%Y-%m-%dT%H:%M:%SZ) ready"']
    assert main.index("  " + writes[0]) == main.index("}") - 2
    assert "  trap 'on_error $LINENO' ERR" in main
    assert lines[-3:] == ['if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then', '  main "$@"', "fi"]
    # Old markers go before any step runs, so a waiter never sees a previous boot's.
    assert text.index('rm -f "$READY_MARKER" "$FAILED_MARKER"') < text.index('step "install packages"')


def test_ssh_is_set_up_before_the_packages_and_the_docker_group_after_docker() -> None:
    """Until setup_sshd runs, sshd offers the image's own host key and the deploy step refuses it: that
    window must not span minutes of apt. The docker group only exists once docker.io is installed."""
    text = render_startup_script(PARAMS)
    main = text[text.index("\nmain() {") :]
    calls = [
        "setup_user",
        "setup_sshd",
        "install_packages",
        "systemctl enable --now docker",
        "join_docker_group",
    ]
    positions = [main.index(f"\n  {call}\n") for call in calls]
    assert positions == sorted(positions), dict(zip(calls, positions, strict=True))
    setup_user = text[text.index("\nsetup_user() {") : text.index("\n}\n", text.index("\nsetup_user() {"))]
    assert "docker" not in setup_user
