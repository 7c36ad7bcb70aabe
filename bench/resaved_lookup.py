"""Benchmark: what finding a re-saved copy adds before a new file is read (issue #10).

A measurement, not a test. Alternated old/new, on a ledger holding no import, for an Allpay
file of --lines lines: old = the file's SHA-256 and its batch's lookup (main before the
re-saved copies were looked for); new = the same, the file's normalised content's SHA-256
(its content claim's id, `domain.imports.content_sha256`), the batch ids of its other
line-ending, final-newline and byte-order-mark forms (`domain.imports.resaved_batch_ids`)
and the two lookups of them all (`application.imports._imported_before`, before reading and
before saving, one query each). Prints medians. Compare a release's "new" with another's by
running this in each checkout, alternately.

    .venv/bin/python -m bench.resaved_lookup [--lines 100000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

from application.imports import _batch_or_none, _imported_before
from bench.imports import allpay_file
from bench.record_payments import (
    DEFAULT_PG_ADMIN_URL,
    DEFAULT_PG_DB,
    PostgresBackend,
    SQLiteBackend,
    console,
    ledger_on,
)
from domain.imports import FileContentClaim, batch_id_for, content_sha256, resaved_batch_ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    content = allpay_file(args.lines)

    def old(ledger) -> None:
        sha256 = hashlib.sha256(content).hexdigest()
        assert _batch_or_none(ledger, batch_id_for(sha256)) is None

    def new(ledger) -> None:
        sha256 = hashlib.sha256(content).hexdigest()
        claim = FileContentClaim.create_id(content_sha256(content))
        copies = [claim, *resaved_batch_ids(content, sha256)]
        assert _imported_before(ledger, [batch_id_for(sha256), *copies]) is None
        assert _imported_before(ledger, copies) is None

    backends = (SQLiteBackend(), PostgresBackend(DEFAULT_PG_ADMIN_URL, DEFAULT_PG_DB + "_resaved"))
    for backend in backends:
        with ledger_on(backend.fresh()) as ledger:
            ms: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(args.repeats):
                for name, run in (("old", old), ("new", new)):
                    start = time.perf_counter()
                    run(ledger)
                    ms[name].append((time.perf_counter() - start) * 1000)
        before, after = statistics.median(ms["old"]), statistics.median(ms["new"])
        console.print(
            f"{backend.name}: {len(content):,} bytes, old {before:.1f} ms, new {after:.1f} ms, "
            f"added {after - before:.1f} ms"
        )


if __name__ == "__main__":
    main()
