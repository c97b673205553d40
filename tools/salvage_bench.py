"""How long salvaging a damaged spool takes, and what it saves (docs/FIELD.md, "Self-healing").

    python tools/salvage_bench.py --rows 45000 --damaged 5

Fills a spool in a temporary folder with ``--rows`` predictions of 400 bytes, overwrites
``--damaged`` random 1 KB pages, and times the open that salvages it and sets it aside.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
import time
from pathlib import Path

from edge_agent.publish.spool import SqliteSpool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=45_000)
    parser.add_argument("--damaged", type=int, default=5, help="1 KB pages overwritten with random bytes")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spool.sqlite"
        spool = SqliteSpool(path)
        for _ in range(args.rows):
            spool.put("edge-agent/pi/waste/prediction", os.urandom(400), 1, False)
        spool.close()
        pages = path.stat().st_size // 1024
        rng = random.Random(args.seed)
        with path.open("r+b") as f:
            for _ in range(args.damaged):
                f.seek(rng.randrange(2, pages) * 1024)
                f.write(os.urandom(1024))
        t0 = time.monotonic()
        again = SqliteSpool(path)
        took = time.monotonic() - t0
        again.close()
    print(f"{args.rows} rows, {pages} pages, {args.damaged} damaged: salvaged in {took:.2f} s, "
          f"{again.salvaged} saved, {again.lost} lost")


if __name__ == "__main__":
    main()
