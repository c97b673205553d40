"""edge-agent-convert: folder or Keras model → verified full-int8 TFLite MobileNet + manifest.

This package is the only place in edge_agent that imports TensorFlow, and it does so lazily
(:mod:`edge_agent.convert._tf`), so ``describe --help`` and the agent itself never pay for it.

    data.py      scan a class-per-folder image set, split it deterministically, load images
    build.py     MobileNet v1 / v2 / v3-small / v3-large with width and resolution
    image/       train.py (folder → Keras model: augmentation, class weights, progress, ImageNet start),
                 mobilenet_v2.py (torchvision's MobileNetV2 in Keras), pth.py (a .pth without torch),
                 imagenet.py (find the installed weights, check the port on a real photo)
    source.py    import a .keras / .h5 / SavedModel with its labels and input spec
    quantize.py  Keras model + calibration data → full-int8 .tflite + manifest + report
    graph.py     what is inside a .tflite flatbuffer: op and tensor types, MACs (no TF needed)
    evaluate.py  a .tflite on labelled images through the agent's own engine
    report.py    metrics (top-1, per-class, confusion) and the markdown / JSON report
    describe.py  parameters and multiply-adds of an architecture
    edgetpu.py   Edge TPU compatibility check and edgetpu_compiler
    voice/       train-voice and enroll: keyword models from a Speech Commands folder
    cli.py       argparse entry point, one command table for every subcommand
"""
