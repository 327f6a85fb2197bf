"""The core's built-in plugin: the in-process bus ``"local"`` and the in-memory persister
``"memory"``, registered through the same hooks as any third-party plugin (see
:mod:`perun_core.builtins.plugin`)."""
