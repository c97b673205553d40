"""The sensor-model part of ``edge-agent-convert``: ``train-series``, beside ``image/`` and ``voice/``
around the shared quantize / report / describe core.

    data.py     a folder of CSV recordings: scan, split by source, windows (numpy only)
    models.py   the architectures (cnn, lstm, gru, dnn, autoencoder) and how recurrent layers lower
    train.py    ``train-series``: folder → model + manifest + card, evaluated through the agent's own path
    card.py     the model card (markdown)

TensorFlow is imported lazily (:mod:`edge_agent.convert._tf`), after the data checks.
"""
