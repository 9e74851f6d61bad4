"""Third-party extensions: recalibration modules and trainers that other packages add to nnunet-se's registries.

A package declares an entry point in the group ``nnunet_se.plugins`` (``pyproject.toml``:
``[project.entry-points."nnunet_se.plugins"] my_gates = "my_gates.trainers"``) naming one of its modules. Importing
that module registers its modules (:func:`nnunet_se.modules.register_recalibration`) and trainers
(:func:`nnunet_se.trainer_registry.register_trainers`). Both registries import every such module once, the first
time they are asked, so ``nnunet-se list``, ``grid``, ``status``, ``table`` and the injection see them
(docs/extending.md). Importing this module is cheap.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging

from nnunet_se.errors import UserError

GROUP = "nnunet_se.plugins"
logger = logging.getLogger(__name__)


@functools.cache
def load_plugins() -> tuple[str, ...]:
    """Import the module of every ``nnunet_se.plugins`` entry point (sorted by name, once per process); returns their
    names. A plugin that fails to import is a UserError naming the entry point and its error."""
    loaded = []
    for entry in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: e.name):
        try:
            entry.load()
        except Exception as exc:  # any error of a third-party import: one line naming the plugin
            raise UserError(f"plugin {entry.name} = {entry.value} (entry point group {GROUP}) does not import: "
                            f"{type(exc).__name__}: {exc}") from exc
        logger.debug("loaded plugin %s = %s", entry.name, entry.value)
        loaded.append(entry.name)
    return tuple(loaded)
