"""``python -m edge_agent.convert`` = ``edge-agent-convert`` (works without installing the package)."""

from .cli import main

raise SystemExit(main())
