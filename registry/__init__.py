"""Plugin discovery and the component name tables."""

from cadenza.registry.catalog import Registry
from cadenza.registry.discovery import discover, get_registry, set_registry

__all__ = ["Registry", "discover", "get_registry", "set_registry"]
