"""The modules holding a framework's built-in rules, imported on the first lookup.

Each module registers its rules when imported; importing them all up front would slow every
start-up, so a registry imports them when a rule is first asked for. A build that leaves a
family out (its module missing) still works; any other import error is a bug and is raised.
"""

from __future__ import annotations

import importlib

__all__ = ["Families"]


class Families:
    """Rule modules ``<package>.<name>``, imported together, once.

    Example:
        >>> families = Families("paramscope.rules.keras", ("core", "not_in_this_build"))
        >>> families.load()
        >>> families.loaded
        True
    """

    def __init__(self, package: str, names: tuple[str, ...]) -> None:
        self.package = package
        self.names = names
        self.loaded = False

    def load(self) -> None:
        """Import every family module not yet imported; a missing one is skipped."""
        if self.loaded:
            return
        # Set first: a family module that looks a rule up while being imported must not recurse.
        self.loaded = True
        for name in self.names:
            module = f"{self.package}.{name}"
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
