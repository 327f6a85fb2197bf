"""perun-demo: ``perun demo``, Alice and Bob open a channel, pay each other and settle.

The command (:mod:`perun_demo.cli`) is registered through the ``perun_register_commands``
hook; the same scenarios run from Python with :func:`perun_demo.run.run_demo`::

    import asyncio
    from perun_demo.run import run_demo

    result = asyncio.run(run_demo(payments=40, seed=1))
    assert result.ok and result.final["Bob"] == result.initial["Bob"] + result.net_to_bob

This package module imports nothing: loading the plugin must stay cheap.
"""
