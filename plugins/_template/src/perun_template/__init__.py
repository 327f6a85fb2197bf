"""perun-template: a chain-backend plugin to copy (registers the chain ``"template"``).

The package names its API without importing it (:func:`perun_core.lazy.lazy_exports`):
the plugin loader imports this package for every ``perun`` command and ``load_plugins()``,
so your chain's client library is imported only when the backend is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.lazy import lazy_exports

if TYPE_CHECKING:
    from perun_template.backend import TemplateAdjudicator, TemplateBackend
else:
    __getattr__ = lazy_exports(
        __name__,
        {
            "TemplateAdjudicator": "perun_template.backend",
            "TemplateBackend": "perun_template.backend",
        },
    )

__all__ = ["TemplateAdjudicator", "TemplateBackend"]
