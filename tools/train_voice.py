#!/usr/bin/env python3
"""Train the voice-command model until ``edge-agent-convert train-voice`` is wired in; same flags:

    python tools/train_voice.py --data /tmp/voice_data --out models/voice.tflite
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_agent.convert.voice import train_voice_main

if __name__ == "__main__":
    sys.exit(train_voice_main(sys.argv[1:]))
