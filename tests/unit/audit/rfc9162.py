"""An independent RFC 9162 implementation for the tests, written from the RFC (no service code)."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(d: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, literally."""
    n = len(d)
    if n == 0:
        return h(b"")
    if n == 1:
        return h(b"\x00" + d[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return h(b"\x01" + mth(d[:k]) + mth(d[k:]))


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], expected: bytes) -> bool:
    """RFC 9162 2.1.3.2, literally."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, h(b"\x00" + leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = h(b"\x01" + p + r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = h(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == expected


def verify_consistency(first: int, second: int, r1: bytes, r2: bytes, path: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2, literally."""
    if first == second:
        return not path and r1 == r2
    if first & (first - 1) == 0:
        path = [r1, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = h(b"\x01" + c + fr), h(b"\x01" + c + sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = h(b"\x01" + sr + c)
        fn, sn = fn >> 1, sn >> 1
    return fr == r1 and sr == r2 and sn == 0


def chain_hash(record: dict) -> str:
    """The contract's record hash, from the contract's words."""
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(bytes.fromhex(record["prev_hash"]) + text.encode()).hexdigest()


def check_chain(records: list[dict]) -> None:
    """Assert that records 0..n-1 form the contract's chain."""
    prev = "0" * 64
    for seq, record in enumerate(records):
        assert record["seq"] == seq and record["prev_hash"] == prev, f"seq {seq} does not link"
        assert record["hash"] == chain_hash(record), f"seq {seq} has a wrong hash"
        prev = record["hash"]


def check_signature(checkpoint: dict) -> None:
    """Assert the checkpoint's Ed25519 signature over the contract's text."""
    text = f"segwarden-audit\n{checkpoint['tree_size']}\n{checkpoint['root']}\n{checkpoint['timestamp']}\n"
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(checkpoint["public_key"]))
    key.verify(base64.b64decode(checkpoint["signature"]), text.encode())
