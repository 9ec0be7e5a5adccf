"""Named registries: how a new method, refiner or table plugs in without an ``if`` branch.

A module declares its entry with the registry's decorator; the registry imports every module
of its packages the first time a name is missing, so nothing else needs editing.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

from camflow.io import CamflowInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` (e.g. "training method") by name, filled by :meth:`register`
    in the modules of ``packages``."""

    def __init__(self, kind: str, packages: tuple[str, ...]) -> None:
        self.kind = kind
        self.packages = packages
        self.entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its argument under ``name`` (also set as its ``name``)."""
        def register(entry: T) -> T:
            if self.entries.get(name, entry) is not entry:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            entry.name = name
            self.entries[name] = entry
            return entry
        return register

    def discover(self) -> None:
        """Import every module of the packages, so that their decorators run."""
        if self._discovered:
            return
        for package_name in self.packages:
            package = importlib.import_module(package_name)
            for info in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{package_name}.{info.name}")
        self._discovered = True

    def names(self) -> list[str]:
        self.discover()
        return sorted(self.entries)

    def get(self, name: str, key: str) -> T:
        """The entry ``name``; an unknown name fails naming the config ``key`` and the known
        names."""
        if name not in self.entries:
            self.discover()
        if name not in self.entries:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CamflowInputError(f"config key {key}: unknown {self.kind} {name!r}{hint}; "
                                    f"known: {', '.join(self.names())}")
        return self.entries[name]
