"""The ``helix`` console script. `helix progress` and `helix checkpoint`, run by a shell task, are
answered here over the worker's task channel (``agent.task_channel``) with the standard library only,
in the time Python takes to start; every other command, and these two wherever the channel cannot
serve them (no socket, a worker that is gone, arguments this parser does not take), goes to the full
command line (``cli.app``), which gives the usual errors and writes through the database.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["main"]

#: The same names as ``agent.task_channel.SOCKET_ENV`` and the shell executor's lease variables
#: (repeated, not imported: importing the agent layer is what this module exists to avoid).
SOCKET_ENV = "HELIX_TASK_SOCKET"
TOKEN_ENV = "HELIX_LEASE_TOKEN"
#: How long to wait for the worker's answer (it waits for the database, which may be failing over).
REPLY_TIMEOUT = 300.0


def main() -> None:
    code = through_channel(sys.argv[1:], os.environ)
    if code is not None:
        sys.exit(code)
    from helixcode.cli.app import main as full

    full()


def through_channel(args: Sequence[str], env: Mapping[str, str]) -> int | None:
    """The exit code of a command the task channel answered; ``None``: leave it to the full CLI."""
    path, token = env.get(SOCKET_ENV), env.get(TOKEN_ENV)
    if not (path and token and args) or args[0] not in ("progress", "checkpoint"):
        return None
    request = _progress(args[1:]) if args[0] == "progress" else _checkpoint(args[1:])
    if request is None:
        return None
    reply = _ask(path, {**request, "token": token})
    if reply is None:
        return None
    if reply.get("ok"):
        return 0
    print(f"error: {reply.get('error', 'the worker refused the request')}", file=sys.stderr)
    return int(reply.get("code", 1))


def _progress(args: Sequence[str]) -> dict[str, Any] | None:
    """``FRACTION [MESSAGE]``, a fraction from 0 to 1; anything else is the full CLI's to judge."""
    if not 1 <= len(args) <= 2 or any(a.startswith("-") for a in args):
        return None
    try:
        fraction = float(args[0])
    except ValueError:
        return None
    if not 0.0 <= fraction <= 1.0:
        return None
    return {"op": "progress", "fraction": fraction, "message": args[1] if len(args) == 2 else None}


def _checkpoint(args: Sequence[str]) -> dict[str, Any] | None:
    """``DATA [--name NAME]`` (or ``--name=NAME``), DATA valid JSON."""
    name, positional, rest = "checkpoint", [], list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--name" and rest:
            name = rest.pop(0)
        elif arg.startswith("--name="):
            name = arg.removeprefix("--name=")
        elif arg.startswith("-") and arg != "-":
            return None
        else:
            positional.append(arg)
    if len(positional) != 1 or not name:
        return None
    try:
        data = json.loads(positional[0])
    except ValueError:
        return None
    return {"op": "checkpoint", "name": name, "data": data}


def _ask(path: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """Send one request line and read the reply line; ``None`` when the worker cannot be reached."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(REPLY_TIMEOUT)
            conn.connect(path)
            conn.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return None
    try:
        answer = json.loads(reply)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None
