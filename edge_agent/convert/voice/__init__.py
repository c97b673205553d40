"""The keyword-model part of ``edge-agent-convert``: ``train-voice`` and ``enroll``.

    data.py     a Speech Commands folder: scan, split by speaker, clips → arrays (numpy only)
    augment.py  speakers and rooms: speed, reverb, microphone, AGC, clipping, SNR; mel warp, masks
    model.py    the DS-CNN, its full-int8 conversion (the image tool's quantize) and predictions
    train.py    ``train-voice``: folder → model + float Keras model + manifest + report
    enroll.py   ``enroll``: a user's recordings + room sound (+ replayed base data) → fine-tuned, int8, re-tuned
    cli.py      the two subcommands' flags, registered in :mod:`edge_agent.convert.cli`'s table

TensorFlow is imported lazily (:mod:`edge_agent.convert._tf`), after the data checks.
"""
