"""One registry for every pluggable component.

Components register themselves with a decorator at import time; ``paxion/__init__.py`` imports
every module that registers something, explicitly, so ``import paxion`` fills the registry.

    @registry.register("fuser", "xattn")
    class CrossAttentionFuser(nn.Module): ...

    registry.get("fuser", "xattn")      # -> CrossAttentionFuser
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

KINDS = (
    "backbone",  # name -> zero-arg-compatible factory returning a VideoTextBackbone
    "patcher",  # name -> nn.Module class
    "fuser",  # name -> nn.Module class
    "model",  # name -> model class with a ``Config`` dataclass
    "task",  # name -> task class with a ``Config`` dataclass
    "dataset",  # name -> dataset builder class with a ``Config`` dataclass
    "processor",  # name -> video/text processor factory
    "lr_schedule",  # name -> schedule class
    "technique",  # name -> training/eval technique class with a ``Config`` dataclass (IWO, SWA, ...)
)

T = TypeVar("T")


class RegistryError(KeyError):
    """Unknown or duplicate registry entry. ``str()`` gives the plain message."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry:
    def __init__(self, kinds: tuple[str, ...] = KINDS) -> None:
        self._entries: dict[str, dict[str, Any]] = {kind: {} for kind in kinds}

    def _table(self, kind: str) -> dict[str, Any]:
        if kind not in self._entries:
            raise RegistryError(f"unknown registry kind '{kind}'; valid kinds: {sorted(self._entries)}")
        return self._entries[kind]

    def add(self, kind: str, name: str, obj: Any) -> Any:
        table = self._table(kind)
        if name in table:
            raise RegistryError(f"{kind} '{name}' is already registered (by {table[name]!r})")
        table[name] = obj
        return obj

    def register(self, kind: str, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorator(obj: T) -> T:
            return self.add(kind, name, obj)

        return decorator

    def get(self, kind: str, name: str) -> Any:
        table = self._table(kind)
        if name not in table:
            raise RegistryError(f"unknown {kind} '{name}'; valid {kind} names: {sorted(table)}")
        return table[name]

    def names(self, kind: str) -> list[str]:
        return sorted(self._table(kind))

    def __contains__(self, kind_and_name: tuple[str, str]) -> bool:
        kind, name = kind_and_name
        return name in self._table(kind)


registry = Registry()
