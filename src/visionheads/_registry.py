"""The one small registry type: loud on duplicates, helpful on unknown names."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from visionheads.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to builders; registering a name twice raises."""

    def __init__(self, kind: str, hint: str) -> None:
        self.kind = kind  # e.g. "backbone", used in error messages
        self.hint = hint  # how the user lists the valid names
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name`; raises ConfigError if the name is taken."""
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """Register the decorated object under `name`."""
        return lambda entry: self.register(name, entry)

    def get(self, name: str) -> T:
        """The entry of `name`, or a ConfigError with a suggestion and the valid names."""
        if name in self._entries:
            return self._entries[name]
        raise ConfigError(unknown_name_message(self.kind, name, self.names(), self.hint))

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_name_message(kind: str, name: str, valid: list[str], hint: str) -> str:
    """`unknown backbone 'resnt18'; did you mean 'resnet18'? (list_backbones() shows all)`."""
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    suggestion = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(valid)}."
    return f"unknown {kind} {name!r}{suggestion} ({hint})"
