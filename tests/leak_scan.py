"""Whether a secret appears in bytes meant to be ciphertext: in the clear, or in whatever
zlib, raw deflate or gzip make of the bytes from any offset (a compressed plaintext would
hide it from a plain search).

    leaks(data, ["CANARY-..."]) -> the needles found

Test modules import it as `tests.leak_scan`.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator


def decompressions(data: bytes) -> Iterator[bytes]:
    """Whatever zlib, raw deflate or gzip make of the data from every offset."""
    view = memoryview(data)
    for start in range(len(data)):
        for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS, zlib.MAX_WBITS | 16):
            try:
                out = zlib.decompressobj(wbits).decompress(view[start:], 1 << 22)
            except zlib.error:
                continue
            if len(out) >= 8:
                yield out
        if view[start:start + 2] == b"\x1f\x8b":
            try:
                yield gzip.decompress(view[start:])
            except (OSError, EOFError, zlib.error):
                pass


def leaks(data: bytes, needles: list[str]) -> list[str]:
    forms = {n: (n.encode(), n.encode("utf-16-le")) for n in needles}
    found = {n for n, fs in forms.items() if any(f in data for f in fs)}
    for out in decompressions(data):
        found |= {n for n, fs in forms.items() if n not in found and any(f in out for f in fs)}
        if len(found) == len(needles):
            break
    return sorted(found)
