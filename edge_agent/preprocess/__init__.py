"""Preprocessing shared by the agent and the conversion tool, so training and serving cannot drift."""
