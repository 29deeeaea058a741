"""The experiment runner: builds images and runs the tools x APIs x repetitions matrix through a
resource-gated container scheduler, then verifies, summarises, reports and uploads the results.

Runs on the experiment VM (started by the systemd unit that `pulumi up` installs) and on any
workstation with a Docker engine: `python -m remote_runner --help`.
"""
