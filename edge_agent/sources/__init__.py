"""Frame sources behind one small interface (:class:`~edge_agent.sources.base.Source`).

Pick one with :func:`edge_agent.sources.factory.make_source`; the reader thread in
:mod:`edge_agent.sources.reader` keeps a live camera fresh and reopens it when it fails.
"""
