"""The image trainer: folder → Keras MobileNet, from scratch or from ImageNet (torchvision's
MobileNetV2, read from a ``.pth`` without torch). Shared pieces (quantize, report, describe,
data loading through the agent's preprocessing) stay in :mod:`edge_agent.convert`."""
