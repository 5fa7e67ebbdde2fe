"""Lazy package namespaces (PEP 562): a name's module is imported when the name is first used.

``import tileuq`` must stay cheap (napari imports it to read the plugin manifest), and
``tileuq.engine.results`` must import without torch, so the package ``__init__`` modules map
public names to the submodules that define them instead of importing those submodules.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def attach(
    package: str, lazy: Mapping[str, str], names: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package``.

    Parameters
    ----------
    package
        The package's ``__name__``.
    lazy
        Public name -> dotted module that defines it.
    names
        The package's ``__all__`` (what ``dir()`` lists).

    Returns
    -------
    tuple
        Functions to assign to the package's ``__getattr__`` and ``__dir__``; a resolved name is
        cached in the package namespace, so the lookup runs once per name.
    """

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__
