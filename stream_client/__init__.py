"""Command-line client for the streaming function URL: ``python -m stream_client "prompt"``."""
