"""``python -m edge_agent.bench``."""

import sys

from .cli import main

sys.exit(main())
