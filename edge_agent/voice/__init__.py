"""Voice commands: audio → log-mel → keyword model every hop → one event per spoken command → MQTT.

    source (mic / WAV) ──hop──▶ KeywordSpotter (1 s window, preprocess.audio, Engine) ──scores──▶
    Recognizer (average, threshold, suppression) ──Command──▶ payload ──▶ publisher "voice/command"

:class:`edge_agent.agents.voice.VoiceAgent` feeds them; the one run loop (:mod:`edge_agent.runtime`) drives it.
"""
