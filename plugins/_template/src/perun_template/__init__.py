"""perun-template: a chain-backend plugin to copy (registers the chain ``"template"``)."""

from perun_template.backend import TemplateAdjudicator, TemplateBackend

__all__ = ["TemplateAdjudicator", "TemplateBackend"]
