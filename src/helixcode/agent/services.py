"""What agent tasks share within one worker process: settings, a store, the LLM manager.

Built lazily, once per process and database URL, from the process's own settings (``helix.toml``,
``HELIX_*``), so a worker that never runs an agent task never loads a model; the LLM manager's health
monitor starts with it. Tests (and embedders)
install their own with ``install``. ``extra_tools`` is the hook for tools from elsewhere (the MCP
client's ``McpToolset``): providers listed there are offered to every agent task of this process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from helixcode.agent.sandbox import Sandbox
from helixcode.agent.tools import CommandPolicy, ToolProvider
from helixcode.config import AgentSettings, Settings, load_settings
from helixcode.llm.manager import LLMManager
from helixcode.llm.registry import build_manager
from helixcode.store.store import Store

__all__ = ["AgentServices", "close_services", "install", "services_for"]


@dataclass
class AgentServices:
    settings: Settings
    store: Store
    llm: LLMManager
    extra_tools: list[ToolProvider] = field(default_factory=list)
    command_policy: CommandPolicy = field(default_factory=CommandPolicy)
    sandbox: Sandbox = field(default_factory=Sandbox)
    owned: bool = True  # close the store and manager in close_services()

    @classmethod
    def build(cls, settings: Settings, store: Store, llm: LLMManager) -> AgentServices:
        """Services whose sandbox and command lists come from ``settings.agent``."""
        return cls(
            settings,
            store,
            llm,
            command_policy=command_policy(settings.agent),
            sandbox=Sandbox.from_settings(settings.agent),
        )


def command_policy(agent: AgentSettings) -> CommandPolicy:
    lists = agent.commands
    return CommandPolicy(allow=tuple(lists.allow), deny=tuple(lists.deny), timeout=lists.timeout)


_shared: dict[str, AgentServices] = {}


def install(database_url: str, services: AgentServices) -> None:
    _shared[database_url] = services


async def services_for(database_url: str) -> AgentServices:
    if found := _shared.get(database_url):
        return found
    base = load_settings()
    settings = base.model_copy(update={"database": base.database.model_copy(update={"url": database_url})})
    store = await Store.open(settings, upgrade=False)
    if found := _shared.get(database_url):  # another task got there while we connected
        await store.aclose()
        return found
    services = AgentServices.build(settings, store, build_manager(settings))
    # Probe providers in the background (``llm.health_interval``; never a billed call), so that model
    # selection in this worker skips one that is down instead of finding out on a task's call.
    services.llm.monitor.start()
    services.llm.shared = store  # requests/tokens per minute, 429s and downed providers, fleet-wide
    services.llm.sink = store  # every call's tokens and cost, per task attempt
    _shared[database_url] = services
    return services


async def close_services() -> None:
    """Close what ``services_for`` opened (worker shutdown, test teardown)."""
    while _shared:
        _url, services = _shared.popitem()
        if services.owned:
            await services.llm.aclose()
            await services.store.aclose()
