#!/usr/bin/env python3
"""How fast is a model here, and how much does the agent waste around the interpreter?

The bench lives in the package (``edge_agent/bench/``, one module per mode, behind the ``bench``
extra for plots); this is its front door in a checkout, the same as ``python -m edge_agent.bench``
or ``edge-agent-bench``. ``python tools/bench.py --help`` lists the modes; docs/BENCHMARKS.md
shows the commands and figures.
"""

import sys

from edge_agent.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
