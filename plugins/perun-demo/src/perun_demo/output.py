"""What the demo shows: the balance table, the ledger's transactions, the progress bar."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from perun_core.channel.types import Address, Asset
    from perun_core.interfaces.chain import LedgerTransaction


def balance_table(
    asset: Asset,
    initial: dict[str, int],
    final: dict[str, int],
    expected: dict[str, int],
    before: str = "before",
) -> Table:
    """Alice's and Bob's on-ledger balances before and after, with the expected ones."""
    table = Table(title=f"on-ledger balances ({asset})")
    for col in ("party", before, "after", "expected", "ok"):
        table.add_column(col, justify="right" if col != "party" else "left")
    for who in ("Alice", "Bob"):
        good = final[who] == expected[who]
        table.add_row(
            who,
            str(initial[who]),
            str(final[who]),
            str(expected[who]),
            "[green]✔[/]" if good else "[red]✘[/]",
        )
    return table


def short_hash(tx_hash: str) -> str:
    """``0x`` and the first and last 8 hex digits of a transaction hash."""
    digits = tx_hash.removeprefix("0x")
    if len(digits) <= 18:
        return tx_hash
    return f"0x{digits[:8]}…{digits[-8:]}"


def tx_table(txs: list[LedgerTransaction], names: dict[Address, str], console: Console) -> Table:
    """Every ledger transaction: what it did, who sent (and paid for) it, its hash and gas.

    Full hashes need a terminal of about 130 columns; on a narrower one (an 80-column
    terminal) the hashes are shortened to their first and last 8 digits, so no row wraps.
    """
    table = _tx_table(txs, names, full_hashes=True)
    unbounded = console.options.update_width(1_000_000)  # the width it wants, not the one it has
    if console.measure(table, options=unbounded).minimum > console.width:
        table = _tx_table(txs, names, full_hashes=False)
    return table


def _tx_table(
    txs: list[LedgerTransaction], names: dict[Address, str], *, full_hashes: bool
) -> Table:
    table = Table(title="ledger transactions")
    table.add_column("#", justify="right")
    table.add_column("operation")
    table.add_column("sender")
    table.add_column("tx hash", no_wrap=True)
    table.add_column("gas used", justify="right")
    totals: dict[str, int] = {}
    for i, tx in enumerate(txs, 1):
        who = names.get(tx.sender, tx.sender.short())
        totals[who] = totals.get(who, 0) + tx.gas_used
        shown = tx.tx_hash if full_hashes else short_hash(tx.tx_hash)
        table.add_row(str(i), tx.operation, who, shown, f"{tx.gas_used:,}")
    table.caption = "gas in total: " + ", ".join(f"{w} {g:,}" for w, g in totals.items())
    return table


def progress(console: Console) -> Progress:
    """The payments progress bar (gone once the payments are done)."""
    return Progress(
        TextColumn("payments"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
