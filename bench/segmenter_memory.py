"""What the memory bench reads: Redis bytes by kind of key, and a process's resident memory."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import redis

# A customer's id, a partition or a segment in a key name, so keys group by what they hold.
_CUSTOMER = re.compile(r"\{c:[^}]*\}")
_ERASED = re.compile(r"\{[0-9a-f]+\}:erased:.*")
_SEGMENT = re.compile(r"seg:\{[^}]*\}")
_KNOWN = re.compile(r"\{known:\d+\}")
_NUMBER = re.compile(r":\d+(?=:|$)")


def proc_status_bytes(pid: int, field: str) -> int:
    """`VmRSS` (resident now) or `VmHWM` (the peak) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


def key_kind(key: str, namespace: str) -> str:
    """`{c:*}:s`, `{known:*}:*`, `seg:{*}:members:*`...: the key with what varies replaced by `*`."""
    kind = key.removeprefix(namespace)
    kind = _CUSTOMER.sub("{c:*}", kind)
    kind = _ERASED.sub("{*}:erased:*", kind)
    kind = _SEGMENT.sub("seg:{*}", kind)
    kind = _KNOWN.sub("{known:*}", kind)
    return _NUMBER.sub(":*", kind)


def bytes_by_kind(client: redis.Redis, namespace: str) -> dict[str, dict[str, int]]:
    """Per kind of key: how many keys, their MEMORY USAGE summed, and the encodings seen (one
    Redis of the bench's own, so every key is read)."""
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    encodings: dict[str, Counter[str]] = {}
    batch: list[str] = []

    def flush() -> None:
        with client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.memory_usage(key, samples=0)
                pipe.object("encoding", key)
            answers = pipe.execute()
        for key, used, encoding in zip(batch, answers[::2], answers[1::2], strict=True):
            kind = key_kind(key, namespace)
            count[kind] += 1
            size[kind] += int(used or 0)
            encodings.setdefault(kind, Counter())[str(encoding)] += 1
        batch.clear()

    for key in client.scan_iter(f"{namespace}*", count=2000):
        batch.append(key)
        if len(batch) >= 2000:
            flush()
    if batch:
        flush()
    return {
        kind: {"keys": count[kind], "bytes": size[kind]} | {f"enc_{e}": n for e, n in encodings[kind].items()}
        for kind in sorted(count)
    }
