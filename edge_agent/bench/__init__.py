"""How fast is a model here, and how much does the agent waste around the interpreter?

People pick models, thread counts, CPU or Coral by these numbers, so each one is measured the
way the question is asked, in one process, back to back, and reported as a ratio within the run
(absolute milliseconds on a shared or thermally throttled board drift by more than the effects
we care about)::

    python -m edge_agent.bench invoke   --model M [--threads N] [--edgetpu] [--runs N] [--warmup N]
    python -m edge_agent.bench pipeline --model M --source FILE [--mqtt-host H --mqtt-port P]
    python -m edge_agent.bench baseline --model M --source FILE
    python -m edge_agent.bench startup  --model M --source FILE
    python -m edge_agent.bench compare  --model A --model B [--threads 1,2] [--edgetpu]
    python -m edge_agent.bench all      --model M [--threads 1,2] [--rounds 3] --json OUT --plot OUT.png

    python -m edge_agent.bench audio    --model models/voice.tflite [--source FILE.wav] [--runs N]

Modes (an explicit table, :data:`MODES`):

- ``invoke``: the bare interpreter on a fixed random input, like TFLite's ``benchmark_model``:
  load and first invoke reported apart (on a Coral the first invoke uploads the model), then
  min / mean / p50 / p90 / p99 / max and FPS over ``--runs``.
- ``pipeline``: the agent's own objects (``ImageAgent`` and its ``FrameReader``, the real source
  and publisher, ``runtime.run_loop``) on a video or image folder, timed per stage through the
  agent's stage hook (``agents.base.StageHook``; the service passes none) and a timing source:
  capture/decode (reader thread), wait (main thread idle for a frame), preprocess, invoke,
  postprocess, publish; end-to-end FPS and capture → publish latency. With ``--mqtt-host`` the
  predictions go through a real broker and a subscriber measures capture → delivery too.
- ``baseline``: the loop the tutorials teach — read, convert, resize, normalise with numpy,
  ``set_tensor``, invoke, JSON, publish — in one thread on the same input, to show what
  overlapping capture with inference and writing into the input tensor buy.
- ``startup``: ``python -m edge_agent ... --sink stdout --max-frames N`` as a subprocess:
  seconds from process start to the first prediction line, and peak RSS (``wait4``).
- ``compare``: invoke for several models × thread counts × backends side by side, with speed
  ratios against the first and int8-vs-float pairs ("int8 is 2.8× faster, costs 0.4 points"
  where the manifests carry accuracy).
- ``audio``: the voice agent (``VoiceAgent``, ``runtime.run_loop``) on a WAV file (default: 30 s
  generated) as fast as possible: hops per second, the real-time factor, per-hop stages.
- ``all``: invoke, pipeline, baseline and startup for each ``--threads`` value, ``--rounds``
  times interleaved, and the issue's targets evaluated as ratios (median and spread of rounds).

Every report records the machine (CPU, cores, board, governor, temperature, throttling, load),
the interpreter package and version, and the model (bytes, parameters and multiply-adds counted
from the .tflite itself). ``--json``, ``--csv`` and ``--plot`` write the results.
"""
