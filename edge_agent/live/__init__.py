"""The live page: what the agent sees, right now, in a browser on the device (``--http``).

    agent ──observer (edge_agent.observe)──▶ view.LiveView ◀── server.LiveServer ◀── browser
                                               newest frame,     GET only, token,
                                               last seconds      security headers

and, for Home Assistant, :mod:`.snapshot`: the frame behind each label change as a retained JPEG.
Nothing is encoded or kept while nobody looks (:attr:`view.LiveView.watching`); a slow viewer
only ever gets the newest frame. Standard library only: the page (``page/``) ships in the package.
"""
