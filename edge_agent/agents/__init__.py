"""The agents: one per kind of input (image, audio, series), each implementing :class:`~.base.Agent`."""
