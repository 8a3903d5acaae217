"""The ledger's stored Merkle nodes: read the subtrees a proof needs, write those an append completes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, and_, func, insert, or_, select, tuple_

from services.audit.adapters.sql_tables import merkle_nodes, records
from services.audit.domain.merkle import BLOCK, STORED_LEVEL, NodeBuilder, Part, parts, span, subtree_root

# Leaves hashed per round of a backfill: bounded memory whatever the ledger's length.
_BACKFILL_CHUNK = BLOCK * 4096


def read_subtrees(connection: Connection, needed: Iterable[Part]) -> dict[Part, bytes]:
    """The hashes of `needed`: stored nodes, and the small subtrees hashed from their records."""
    wanted = set(needed)
    stored = sorted(part for part in wanted if part[0] >= STORED_LEVEL)
    found: dict[Part, bytes] = {}
    if stored:
        query = select(merkle_nodes).where(tuple_(merkle_nodes.c.level, merkle_nodes.c.idx).in_(stored))
        found = {(row.level, row.idx): bytes(row.hash) for row in connection.execute(query)}
    small = [part for part in wanted if part[0] < STORED_LEVEL]
    leaves = _leaves(connection, [span(part) for part in small])
    for part in small:
        found[part] = subtree_root([leaves[seq] for seq in range(*span(part))])
    if missing := wanted - found.keys():
        raise LookupError(f"{len(missing)} Merkle subtrees are not stored, e.g. {min(missing)}")
    return found


def store_nodes(connection: Connection, length: int, appended: Sequence[bytes]) -> None:
    """Write the nodes completed by `appended` (record hashes) on a ledger of `length` records."""
    if not appended:
        return
    start = length // BLOCK * BLOCK
    tail = _leaves(connection, [(start, length)])
    builder = NodeBuilder(start, _frontier(connection, start))
    _insert(connection, builder.add([tail[seq] for seq in range(start, length)] + list(appended)))


def backfill_nodes(connection: Connection, length: int) -> int:
    """Store the nodes a ledger of `length` records lacks (one written before nodes were); how many."""
    covered = connection.execute(
        select(func.max(merkle_nodes.c.idx)).where(merkle_nodes.c.level == STORED_LEVEL)
    ).scalar()
    start, target = (0 if covered is None else (covered + 1) * BLOCK), length // BLOCK * BLOCK
    if start >= target:
        return 0
    builder, written = NodeBuilder(start, _frontier(connection, start)), 0
    for lo in range(start, target, _BACKFILL_CHUNK):
        hi = min(lo + _BACKFILL_CHUNK, target)
        leaves = _leaves(connection, [(lo, hi)])
        made = builder.add([leaves[seq] for seq in range(lo, hi)])
        _insert(connection, made)
        written += len(made)
    return written


def _frontier(connection: Connection, size: int) -> list[tuple[Part, bytes]]:
    """The stored parts of a tree of `size` leaves (a multiple of BLOCK), left to right."""
    found = read_subtrees(connection, parts(0, size))
    return [(part, found[part]) for part in parts(0, size)]


def _leaves(connection: Connection, spans: list[tuple[int, int]]) -> dict[int, bytes]:
    """Record hashes (the leaves) of seq in the spans [start, stop), keyed by seq."""
    spans = [(lo, hi) for lo, hi in spans if hi > lo]
    if not spans:
        return {}
    where = or_(*(and_(records.c.seq >= lo, records.c.seq < hi) for lo, hi in spans))
    rows = connection.execute(select(records.c.seq, records.c.hash).where(where))
    return {seq: bytes.fromhex(hashed) for seq, hashed in rows}


def _insert(connection: Connection, nodes: list[tuple[Part, bytes]]) -> None:
    if nodes:
        rows = [{"level": level, "idx": index, "hash": node} for (level, index), node in nodes]
        connection.execute(insert(merkle_nodes), rows)
