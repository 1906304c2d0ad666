"""Remote repositories with real git: a bare repository used through a ``file://`` URL, and two clone
caches (two data directories) standing in for two machines."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helixcode.agent.remote import cache_path, remote_url
from helixcode.agent.workspace import GitError, Workspace, branch_name, job_branch
from tests.integration.agent.conftest import git


@pytest.fixture
def origin(repo: Path, tmp_path: Path) -> Path:
    """A bare repository on disk: the "server" every machine clones, fetches from and pushes to."""
    path = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(path))
    return path


def machine(url: str, tmp_path: Path, name: str, job: str = "job1") -> Workspace:
    return Workspace(url, job, data_dir=tmp_path / f"machine-{name}")


def remote_files(origin: Path, ref: str) -> set[str]:
    return set(git(origin, "ls-tree", "-r", "--name-only", ref).split())


def test_remote_locations_are_told_apart(repo: Path, origin: Path, tmp_path: Path) -> None:
    assert remote_url(repo) is None  # a checkout is worked on in place, as before
    assert remote_url(origin) == str(origin.resolve())  # a bare repository is a remote
    for url in ("file:///srv/r.git", "https://host/r.git", "ssh://git@host/r.git", "git@host:team/r.git"):
        assert remote_url(url) == url
    assert remote_url(tmp_path / "missing") is None
    assert cache_path(tmp_path, "file:///a") != cache_path(tmp_path, "file:///b")


def test_remote_dependent_task_on_another_machine_sees_the_work(origin: Path, tmp_path: Path) -> None:
    url = origin.as_uri()
    a, b = machine(url, tmp_path, "a"), machine(url, tmp_path, "b")
    base = a.ensure_base_sync()
    assert a.repo != b.repo
    assert a.repo.is_relative_to(tmp_path / "machine-a")
    work = a.prepare_sync("build", [])
    assert work.base == base
    (work.path / "lib.py").write_text("VALUE = 1\n")
    a.commit_sync(work, "build: done", allow_empty=True)
    a.integrate_sync("build")
    a.release_sync(work)
    refs = git(origin, "for-each-ref", "--format=%(refname)").split()
    assert f"refs/heads/{branch_name('job1', 'build')}" in refs
    assert f"refs/heads/{job_branch('job1')}" in refs
    assert "refs/helix/job1/base" in refs

    test = b.prepare_sync("test", [branch_name("job1", "build")])  # never saw "build" before: fetched
    assert (test.path / "lib.py").read_text() == "VALUE = 1\n"
    assert b.ensure_base_sync() == base
    (test.path / "test_lib.py").write_text("from lib import VALUE\n")
    b.commit_sync(test, "test: done", allow_empty=True)
    tip = b.integrate_sync("test")
    assert git(origin, "rev-parse", job_branch("job1")).strip() == tip
    assert {"lib.py", "test_lib.py", "app.py"} <= remote_files(origin, job_branch("job1"))


def test_remote_checkpointed_wip_is_restored_on_the_other_machine(origin: Path, tmp_path: Path) -> None:
    url = origin.as_uri()
    a, b = machine(url, tmp_path, "a"), machine(url, tmp_path, "b")
    first = a.prepare_sync("t", [])
    (first.path / "one.txt").write_text("round 1\n")
    checkpointed = a.commit_sync(first, "wip(t): round 1")  # pushed before the checkpoint is saved
    (first.path / "two.txt").write_text("round 2\n")
    a.commit_sync(first, "wip(t): round 2 (machine a dies before its checkpoint)")
    assert checkpointed is not None

    again = b.prepare_sync("t", [], resume_commit=checkpointed)
    assert again.resumed
    assert (again.path / "one.txt").read_text() == "round 1\n"
    assert not (again.path / "two.txt").exists()  # matches the checkpointed conversation
    (again.path / "three.txt").write_text("round 2, again\n")
    mine = b.commit_sync(again, "wip(t): round 2")  # not a fast-forward of the dead attempt's push
    assert git(origin, "rev-parse", branch_name("job1", "t")).strip() == mine

    (first.path / "late.txt").write_text("a zombie writes\n")
    with pytest.raises(GitError, match="rejected"):
        a.commit_sync(first, "wip(t): from a worker that lost its lease")  # its lease on the ref is stale
    assert git(origin, "rev-parse", branch_name("job1", "t")).strip() == mine


class RacingWorkspace(Workspace):
    """Lets another machine land its task between this one's fetch and its push, once."""

    def __init__(self, *args: object, before_push: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.before_push = before_push

    def _push_job(self, commit: str, target: str) -> None:
        if callable(self.before_push):
            run, self.before_push = self.before_push, None
            run()
        super()._push_job(commit, target)


def test_remote_concurrent_integration_retries_and_both_land(origin: Path, tmp_path: Path) -> None:
    url = origin.as_uri()
    b = machine(url, tmp_path, "b")
    a = RacingWorkspace(
        url, "job1", data_dir=tmp_path / "machine-a", before_push=lambda: b.integrate_sync("y")
    )
    for ws, key in ((a, "x"), (b, "y")):
        t = ws.prepare_sync(key, [])
        (t.path / f"{key}.txt").write_text(key)
        ws.commit_sync(t, f"{key}: done")
    tip = a.integrate_sync("x")  # b lands "y" after a fetched: a's first push is refused, then retried
    assert a.push_retries == 1
    assert git(origin, "rev-parse", job_branch("job1")).strip() == tip
    assert {"x.txt", "y.txt"} <= remote_files(origin, job_branch("job1"))
    for key in ("x", "y"):
        ref = git(origin, "rev-parse", branch_name("job1", key)).strip()
        assert git(origin, "merge-base", "--is-ancestor", ref, tip) == ""


def test_remote_many_workers_integrate_at_once(origin: Path, tmp_path: Path) -> None:
    url = origin.as_uri()
    machines = [machine(url, tmp_path, name) for name in ("a", "b", "c")]
    machines[0].ensure_base_sync()
    keys = [(ws, f"t{i}-{j}") for i, ws in enumerate(machines) for j in range(3)]
    for ws, key in keys:
        t = ws.prepare_sync(key, [])
        (t.path / f"{key}.txt").write_text(key)
        ws.commit_sync(t, f"{key}: done")
    start = threading.Barrier(len(keys))

    def land(ws: Workspace, key: str) -> str:
        start.wait()
        return ws.integrate_sync(key)

    with ThreadPoolExecutor(len(keys)) as pool:
        list(pool.map(lambda item: land(*item), keys))
    files = remote_files(origin, job_branch("job1"))
    assert {f"{key}.txt" for _, key in keys} <= files  # nothing lost to a race
    log = git(origin, "log", "--format=%P", job_branch("job1")).splitlines()
    assert all(len(parents.split()) <= 2 for parents in log)


def test_remote_bad_url_names_the_masked_url(tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere.git").as_uri()
    with pytest.raises(GitError, match=f"cannot fetch from {missing}"):
        Workspace(missing, "j", data_dir=tmp_path / "d").ensure_base_sync()
    secret = "https://alice:s3cret@127.0.0.1:9/team/repo.git"
    with pytest.raises(GitError) as caught:
        Workspace(secret, "j", data_dir=tmp_path / "d").start_commit_sync()
    assert "https://alice:***@127.0.0.1:9/team/repo.git" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert not any((tmp_path / "d" / "repos").glob("*.git*"))  # no half-made clone left behind


def test_remote_bare_repository_path_works_like_a_url(origin: Path, tmp_path: Path) -> None:
    ws = Workspace(origin, "job2", data_dir=tmp_path / "m")
    assert ws.url == str(origin.resolve())
    t = ws.prepare_sync("only", [])
    (t.path / "new.txt").write_text("new\n")
    ws.commit_sync(t, "only: done")
    ws.integrate_sync("only")
    assert "new.txt" in remote_files(origin, job_branch("job2"))


def test_remote_recorded_conflict_reaches_the_other_machine(origin: Path, tmp_path: Path) -> None:
    url = origin.as_uri()
    a, b = machine(url, tmp_path, "a"), machine(url, tmp_path, "b")
    for ws, key, text in ((a, "x", "x wins\n"), (b, "y", "y wins\n")):
        t = ws.prepare_sync(key, [])
        (t.path / "app.py").write_text(text)
        ws.commit_sync(t, f"{key}: done")
    record = b.record_conflict_sync("z", [branch_name("job1", "x"), branch_name("job1", "y")])
    assert record.files == ["app.py"]
    assert git(origin, "rev-parse", branch_name("job1", "z")).strip() == record.commit  # pushed
    fix = a.prepare_sync("z.resolve", [branch_name("job1", "z")])  # machine a picks up the resolution
    assert "<<<<<<< " in (fix.path / "app.py").read_text()
