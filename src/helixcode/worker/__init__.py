"""The worker runtime: claim, execute, heartbeat, drain."""
