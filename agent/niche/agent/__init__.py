"""niche-agent: GPIO over MQTT (see README.md and the contract's "The agent")."""

from .agent import Agent
from .config import Config, ConfigError, load

__all__ = ["Agent", "Config", "ConfigError", "load"]
