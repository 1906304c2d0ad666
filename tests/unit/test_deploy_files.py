"""What the deployment files say: the image (Dockerfile, .dockerignore), the compose stack and the
systemd unit, checked against the code they deploy (its settings' defaults, its routes, the sandbox's
needs) so that neither can drift. Their tools and commands run in tests/acceptance/test_deploy.py."""

from __future__ import annotations

import re
import tomllib
from urllib.parse import urlsplit

import pytest

from helixcode.agent.sandbox import CONTAINER_FLAGS
from helixcode.api.routers.health import router as health_router
from helixcode.config import WorkersSettings
from tests.deploy_files import (
    ENV_EXAMPLE,
    ROOT,
    compose,
    dockerfile,
    env_file,
    exec_form,
    image_argv,
    in_build_context,
    interpolate,
    seconds,
    service_argv,
    stages,
    unit,
    unit_argv,
)

DRAIN_TIMEOUT = WorkersSettings().drain_timeout
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL)", re.IGNORECASE)
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")


def makefile_var(name: str) -> str:
    match = re.search(rf"^{name} := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, name
    return match.group(1).strip()


def build_arg(name: str) -> str:
    for ins in dockerfile():
        if ins.keyword == "ARG" and ins.args.startswith(f"{name}="):
            return ins.args.split("=", 1)[1].strip('"')
    raise AssertionError(f"no ARG {name}")


# -- the image -------------------------------------------------------------------------------------


def test_the_image_is_built_in_stages_from_a_pinned_base() -> None:
    built = stages(dockerfile())
    assert len(built) >= 2
    assert [s[0].args for s in built] == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    assert PINNED_PYTHON.match(build_arg("PYTHON_IMAGE"))
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    # Only the finished virtualenv crosses over: no compiler, no sources, no pip cache.
    copies = [i.args for i in built[-1] if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/helix /opt/helix"]


def test_the_image_runs_as_an_unprivileged_user() -> None:
    final = stages(dockerfile())[-1]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users, "the runtime stage never leaves root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "numeric, so a runtime can tell it is not root"
    assert int(uid) >= 1000
    assert gid.isdigit()
    assert int(gid) != 0
    assert any(f"--uid {uid}" in i.args for i in final if i.keyword == "RUN")


def test_the_image_holds_no_secrets_and_fetches_nothing_by_itself() -> None:
    for ins in dockerfile():
        if ins.keyword in {"ENV", "ARG", "LABEL"}:
            assert not SECRET_NAME.search(ins.args), ins
        assert ins.keyword != "ADD", "ADD fetches URLs and unpacks archives; COPY says what it does"
        assert "--mount=type=secret" not in ins.args


def test_the_image_installs_the_runtime_dependencies_at_the_locked_versions() -> None:
    runs = " ".join(i.args for i in dockerfile() if i.keyword == "RUN")
    assert "--constraint requirements.lock" in runs
    assert "dev" not in re.findall(r"optional-dependencies'\]\['(\w+)'\]", runs)
    assert "optional-dependencies']['local']" in runs  # only with WITH_EMBEDDED_MODEL=1
    assert "optional-dependencies']['otel']" in runs  # traces need only HELIX_TRACING_ENABLED=true
    # The embedded model is built like `make install` builds it.
    assert build_arg("WITH_EMBEDDED_MODEL") == "0"
    assert build_arg("LLAMA_CMAKE") == makefile_var("LLAMA_CMAKE")
    assert build_arg("MODEL_WHEEL") == makefile_var("MODEL_WHEEL")


def test_the_runtime_has_what_the_worker_needs() -> None:
    final = stages(dockerfile())[-1]
    packages = " ".join(i.args for i in final if i.keyword == "RUN" and "apt-get install" in i.args)
    for package in ("bubblewrap", "util-linux", "git", "ca-certificates", "tini"):
        assert re.search(rf"\b{package}\b", packages), package
    assert exec_form(next(i for i in final if i.keyword == "ENTRYPOINT"))[:2] == ["/usr/bin/tini", "--"]
    assert image_argv() == ["helix", "worker", "start"]
    assert [i.args for i in final if i.keyword == "EXPOSE"] == ["8600"]
    assert [i.args for i in final if i.keyword == "STOPSIGNAL"] == ["SIGTERM"]


def test_the_build_context_holds_what_the_image_copies_and_nothing_private() -> None:
    for ins in dockerfile():
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            *sources, _dest = ins.args.split()
            for source in sources:
                assert in_build_context(source), source
    assert in_build_context("src/helixcode/store/migrations/versions/0001_initial_schema.py")
    for private in (".git", ".venv/bin/python", ".helix/helix.db", "helix.toml", ".env", "tests/conftest.py"):
        assert not in_build_context(private), private
    assert not in_build_context("src/helixcode/__pycache__/cli.cpython-311.pyc")


# -- compose ---------------------------------------------------------------------------------------


def test_compose_runs_postgres_migrations_the_api_and_two_workers() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "migrate", "api", "worker"}
    assert services["db"]["image"].startswith("postgres:16")
    health = services["db"]["healthcheck"]["test"]
    assert health[:2] == ["CMD", "pg_isready"]
    assert "-h" in health, "over TCP: the first-start server answers on its socket only"

    assert service_argv("migrate") == ["helix", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}

    assert service_argv("worker") == ["helix", "worker", "start"]
    assert services["worker"]["deploy"]["replicas"] == 2


def test_compose_gives_workers_time_to_drain_and_their_sandbox_what_it_needs() -> None:
    worker = compose()["services"]["worker"]
    assert worker["stop_signal"] == "SIGTERM"
    assert seconds(worker["stop_grace_period"]) >= DRAIN_TIMEOUT + 10
    wanted = re.findall(r"--security-opt (\S+)", CONTAINER_FLAGS)
    assert wanted == ["seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"]
    assert worker["security_opt"] == wanted


def test_the_api_listens_on_all_interfaces_and_its_healthcheck_asks_a_real_route() -> None:
    api = compose()["services"]["api"]
    argv = service_argv("api")
    assert argv[:2] == ["helix", "serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    port = argv[argv.index("--port") + 1]
    assert api["ports"] == [f"127.0.0.1:{port}:{port}"]
    test = api["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    url = urlsplit(re.findall(r"'(http://[^']+)'", test[3])[0])
    assert (url.hostname, str(url.port)) == ("127.0.0.1", port)
    assert url.path in {getattr(r, "path", None) for r in health_router.routes}


def test_every_helix_service_reaches_postgres_without_a_password_in_the_file() -> None:
    data = compose()
    services = data["services"]
    for name in ("migrate", "api", "worker"):
        raw = services[name]["environment"]["HELIX_DATABASE_URL"]
        assert "${POSTGRES_PASSWORD:?" in raw
        with pytest.raises(KeyError, match=r"set POSTGRES_PASSWORD in \.env"):
            interpolate(raw, {})
        url = urlsplit(interpolate(raw, {"POSTGRES_PASSWORD": "pw"}))
        assert url.scheme == "postgresql+psycopg"
        assert (url.username, url.password, url.hostname, url.port, url.path) == (
            "helix",
            "pw",
            "db",
            5432,
            "/helix",
        )
    db_env = services["db"]["environment"]
    assert (db_env["POSTGRES_USER"], db_env["POSTGRES_DB"]) == ("helix", "helix")
    assert interpolate(db_env["POSTGRES_PASSWORD"], {"POSTGRES_PASSWORD": "pw"}) == "pw"
    text = (ROOT / "compose.yaml").read_text()
    assert not re.search(r"PASSWORD: (?!\$\{)", text)


# -- systemd ---------------------------------------------------------------------------------------


def test_the_unit_stops_by_draining() -> None:
    service = unit()["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed", "SIGTERM to the worker only: its tasks' commands finish"
    assert seconds(service["TimeoutStopSec"]) > DRAIN_TIMEOUT + 10
    assert service["Restart"] == "on-failure"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_the_unit_runs_the_worker_as_its_own_user_with_the_database_url_from_a_file() -> None:
    service = unit()["Service"]
    assert service["User"] == service["Group"] == "helix"
    assert service["EnvironmentFile"] == "/etc/helix/helix.env"
    argv = unit_argv()
    assert argv[0].startswith("/")
    assert argv[0].endswith("/bin/helix")
    assert argv[1:] == ["worker", "start"]
    assert service["StateDirectory"] == "helix"
    assert service["WorkingDirectory"] == "/var/lib/helix"


def test_the_units_hardening_leaves_bubblewrap_working() -> None:
    service = unit()["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == ""
    # Each of these breaks the sandbox: no user namespaces, no mount/pivot_root, or parts of /proc
    # covered so that the kernel refuses a new /proc ("mount too revealing"), or no sethostname.
    for breaks in (
        "RestrictNamespaces",
        "PrivateUsers",
        "SystemCallFilter",
        "ProtectKernelTunables",
        "ProtectKernelLogs",
        "ProcSubset",
        "ProtectHostname",
        "PrivateDevices",
        "MemoryDenyWriteExecute",
        "DynamicUser",
    ):
        assert breaks not in service, breaks


def test_the_env_example_sets_the_database_and_nothing_that_would_be_misread() -> None:
    text = ENV_EXAMPLE.read_text()
    values = env_file(text)
    assert set(values) == {"HELIX_DATABASE_URL"}
    assert urlsplit(values["HELIX_DATABASE_URL"]).scheme == "postgresql+psycopg"
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            assert "#" not in line, f"a comment after a value is part of the value: {line}"


# -- the README ------------------------------------------------------------------------------------


def test_the_readme_shows_both_ways_to_deploy_with_the_files_own_values() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploying") :]
    section = section[: section.index("\n## ", 1)]
    assert " ".join(CONTAINER_FLAGS.split()) in " ".join(section.replace("\\\n", " ").split())
    assert "docker compose up -d --scale worker=" in section
    assert "systemctl enable --now helix-worker" in section
    assert f"TimeoutStopSec={unit()['Service']['TimeoutStopSec']}" in section
    grace = seconds(compose()["services"]["worker"]["stop_grace_period"])
    assert f"({grace:.0f} s grace)" in section
    assert f"--stop-timeout {grace:.0f}" in section
    assert f"`workers.drain_timeout` ({DRAIN_TIMEOUT:.0f} s)" in section
