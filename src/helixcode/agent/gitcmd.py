"""Running git: one place that sanitises the environment, bounds the time and hides credentials.

Credentials come from git's own configuration and credential helpers, never from HelixCode; a URL with
a password in it may still reach us (``--repo https://user:token@host/r.git``), so every message that
leaves this module has such URLs masked with the same helper ``helix config show`` uses.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from helixcode.config import mask_url
from helixcode.errors import HelixError

__all__ = ["GitError", "run_git", "scrub_urls"]

GIT_TIMEOUT = 120.0
IDENTITY = ("-c", "user.name=HelixCode", "-c", "user.email=helix@localhost", "-c", "commit.gpgsign=false")
#: Git variables a worker's environment may pass on: transport and credentials (ssh, TLS, proxies,
#: askpass, the user's config files). Others (``GIT_DIR``, ``GIT_INDEX_FILE``...) would redirect our
#: commands to another repository and are dropped.
_PASSED = ("GIT_SSH", "GIT_SSL_", "GIT_HTTP_", "GIT_CURL_", "GIT_ASKPASS", "GIT_PROXY_", "GIT_CONFIG_")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


class GitError(HelixError):
    """A git command failed; the message carries its stderr (with credentials masked)."""


def scrub_urls(text: str) -> str:
    """``text`` with the password of every URL in it masked (``https://u:***@host/r.git``)."""
    return _URL.sub(lambda m: mask_url(m.group()), text)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith(_PASSED)}
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password nobody will type
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def run_git(
    *args: str, cwd: Path, check: bool = True, timeout: float = GIT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``git args`` in ``cwd``; ``GitError`` on failure (when ``check``) or timeout."""
    try:
        proc = subprocess.run(
            ["git", *IDENTITY, *args],
            cwd=cwd,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GitError(scrub_urls(f"git {' '.join(args)} timed out after {timeout:g}s")) from None
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    if check and proc.returncode != 0:
        raise GitError(
            scrub_urls(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[:1000]}")
        )
    return proc
