"""What a worker whose sandbox cannot start is told to do: on a host, allow user namespaces; in a
container, the flags the container needs (the same ones compose.yaml and the Dockerfile name)."""

from __future__ import annotations

from pathlib import Path

from helixcode.agent.sandbox import CONTAINER_FLAGS, in_container, userns_remedy


def test_a_container_is_told_the_flags_its_sandbox_needs() -> None:
    inside = userns_remedy(container=True)
    assert inside.startswith(f"This is a container: start it with {CONTAINER_FLAGS}")
    assert "systempaths=unconfined" in inside
    assert "--privileged" in inside
    outside = userns_remedy(container=False)
    assert outside.startswith("Enable unprivileged user namespaces")
    assert "security-opt" not in outside


def test_containers_are_recognised_by_their_marks(tmp_path: Path) -> None:
    assert not in_container(tmp_path, {})
    assert in_container(tmp_path, {"container": "podman"})
    (tmp_path / ".dockerenv").touch()
    assert in_container(tmp_path, {})
