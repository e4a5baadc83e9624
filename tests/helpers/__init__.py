"""What the tests share: servers on loopback, log capture, SSE reading, sample streams, templates, fakes.

Test modules import from here, never from each other or from ``conftest`` (which only declares fixtures).
"""
