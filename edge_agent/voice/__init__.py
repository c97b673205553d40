"""Voice commands: audio → log-mel → keyword model every hop → one event per spoken command → MQTT.

    source (mic / WAV) ──hop──▶ KeywordSpotter (1 s window, preprocess.audio, Engine) ──scores──▶
    Recognizer (average, threshold, suppression) ──Command──▶ payload ──▶ publisher "voice/command"

:mod:`.service` wires these together (``run_audio``), mirroring the image pipeline's start/stop order.
"""
