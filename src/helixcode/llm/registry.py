"""Build providers and the manager from settings: one ``[providers.NAME]`` table per provider.

    [providers.lab]
    type = "llamacpp"
    base_url = "http://gpu-box:8080"
    priority = 10

    [providers.cloud]
    type = "anthropic"
    api_key_env = "ANTHROPIC_API_KEY"
    models = ["claude-sonnet-4-5"]
    priority = 50

With no provider configured (and ``llm.embedded`` on), the embedded SmolLM2 model is the one provider.
"""

from __future__ import annotations

import logging
import os

from helixcode.config import ProviderSettings, Settings
from helixcode.errors import ConfigError
from helixcode.llm.anthropic import AnthropicProvider
from helixcode.llm.base import Provider
from helixcode.llm.limits import Quota
from helixcode.llm.llamacpp import LlamaCppProvider
from helixcode.llm.local import LocalProvider
from helixcode.llm.manager import LLMManager, ProviderEntry
from helixcode.llm.ollama import OllamaProvider
from helixcode.llm.openai_compat import OpenAICompatProvider
from helixcode.llm.policy import RetryPolicy
from helixcode.llm.types import Deadlines, ModelCapabilities
from helixcode.llm.usage import Price

__all__ = ["EMBEDDED_NAME", "build_manager", "build_provider", "configured_capabilities"]

log = logging.getLogger(__name__)

EMBEDDED_NAME = "embedded"
#: Where each server type listens when ``base_url`` is not given.
DEFAULT_URLS = {
    "openai": "https://api.openai.com/v1",
    "ollama": "http://127.0.0.1:11434",
    "llamacpp": "http://127.0.0.1:8080",
    "anthropic": "https://api.anthropic.com",
}


def configured_capabilities(cfg: ProviderSettings) -> ModelCapabilities | None:
    """Capabilities declared in config, or None to let the provider discover them."""
    if cfg.capabilities is None:
        return None
    caps = set(cfg.capabilities)
    return ModelCapabilities(
        tools="tools" in caps,
        vision="vision" in caps,
        json_schema="json_schema" in caps,
        embeddings="embeddings" in caps,
        streaming="streaming" in caps,
        context_length=cfg.context_length,
    )


def _api_key(name: str, cfg: ProviderSettings) -> str | None:
    if cfg.api_key is not None:
        return cfg.api_key.get_secret_value()
    if cfg.api_key_env:
        key = os.environ.get(cfg.api_key_env)
        if not key:
            log.warning(
                "api key variable not set",
                extra={"action": "llm.config", "provider": name, "variable": cfg.api_key_env},
            )
        return key
    return None


def build_provider(name: str, cfg: ProviderSettings) -> Provider:
    deadlines = Deadlines(
        total=cfg.timeout,
        first_token=cfg.first_token_timeout,
        idle=cfg.idle_timeout,
        connect=cfg.connect_timeout,
    )
    caps = configured_capabilities(cfg)
    if caps is None and cfg.context_length and cfg.type in ("openai", "llamacpp"):
        caps = ModelCapabilities(tools=True, json_schema=True, context_length=cfg.context_length)
    url = cfg.base_url or DEFAULT_URLS.get(cfg.type, "")
    key = _api_key(name, cfg)
    match cfg.type:
        case "openai":
            return OpenAICompatProvider(
                name, url, api_key=key, models=cfg.models, capabilities=caps, deadlines=deadlines
            )
        case "llamacpp":
            return LlamaCppProvider(
                name, url, api_key=key, models=cfg.models, capabilities=caps, deadlines=deadlines
            )
        case "ollama":
            return OllamaProvider(
                name,
                url,
                api_key=key,
                num_ctx=cfg.context_length,
                models=cfg.models,
                capabilities=caps,
                deadlines=deadlines,
            )
        case "anthropic":
            return AnthropicProvider(
                name, url, api_key=key, models=cfg.models, capabilities=caps, deadlines=deadlines
            )
        case "local":
            return LocalProvider(
                name,
                model_path=cfg.model_path,
                n_ctx=cfg.context_length,
                chat_format=cfg.chat_format,
                models=cfg.models,
                capabilities=caps,
                deadlines=deadlines,
            )
    raise ConfigError(f"providers.{name}: unknown type {cfg.type!r}")


def build_manager(settings: Settings) -> LLMManager:
    """The manager for these settings (not started: call ``start()`` or use it lazily)."""
    llm = settings.llm
    entries = {
        name: ProviderEntry(
            build_provider(name, cfg),
            cfg.priority,
            cfg.cost,
            quota=Quota(rpm=cfg.rpm, tpm=cfg.tpm),
            price=None
            if cfg.price_input is None or cfg.price_output is None
            else Price(cfg.price_input, cfg.price_output, cfg.price_cached_input),
        )
        for name, cfg in settings.providers.items()
        if cfg.enabled
    }
    if not entries and llm.embedded:
        entries[EMBEDDED_NAME] = ProviderEntry(LocalProvider(EMBEDDED_NAME), priority=1000)
    if llm.default_provider is not None and llm.default_provider not in entries:
        raise ConfigError(f"llm.default_provider: no enabled provider named {llm.default_provider!r}")
    return LLMManager(
        entries,
        policy=RetryPolicy(attempts_per_candidate=llm.retry_attempts, max_wait=llm.retry_max_wait),
        max_rate_wait=llm.rate_limit_wait,
        breaker_threshold=llm.breaker_threshold,
        breaker_cooldown=llm.breaker_cooldown,
        health_interval=llm.health_interval,
        default_provider=llm.default_provider,
        default_model=llm.default_model,
    )
