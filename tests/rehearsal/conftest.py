"""The rehearsal needs the Docker engine (scripts/bootstrap.sh starts it) and root for its one DNAT
rule; a missing engine is a failure, never a skip."""
