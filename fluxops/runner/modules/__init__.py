"""The modules a task can name, by name: each is a :class:`~fluxops.runner.module.Module` subclass."""

from __future__ import annotations

from fluxops.runner.module import Module

MODULES: dict[str, type[Module]] = {}


def register(cls: type[Module]) -> type[Module]:
    """Class decorator: make the module known by its ``name``."""
    if cls.name in MODULES:
        raise ValueError(f"module {cls.name} is registered twice")
    MODULES[cls.name] = cls
    return cls


def get(name: str) -> type[Module] | None:
    """The module called ``name``, with every module file loaded."""
    _load_all()
    return MODULES.get(name)


def names() -> list[str]:
    """Every module name, sorted."""
    _load_all()
    return sorted(MODULES)


_loaded = False


def _load_all() -> None:
    """Import every module file once (the folder is listed on the first look-up only)."""
    global _loaded
    if _loaded:
        return
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True
