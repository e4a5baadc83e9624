"""The blog's TokenIterator, restored as the baseline (do not use it: it is here to be measured).

Known defects, kept on purpose: the buffer is never trimmed (memory grows with
the stream), ``lstrip("data:")`` strips characters rather than a prefix, the
``+ 1`` assumes a blank line after every event, special and empty tokens are
returned, and in-band errors raise ``KeyError``.
"""

import io
import json


class TokenIterator:
    def __init__(self, stream):
        self.byte_iterator = iter(stream)
        self.buffer = io.BytesIO()
        self.read_pos = 0

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            self.buffer.seek(self.read_pos)
            line = self.buffer.readline()
            if line and line[-1] == ord("\n"):
                self.read_pos += len(line) + 1
                full_line = line[:-1].decode("utf-8")
                line_data = json.loads(full_line.lstrip("data:").rstrip("/n"))  # noqa: B005 (the blog's code, verbatim)
                return line_data["token"]["text"]
            chunk = next(self.byte_iterator)
            self.buffer.seek(0, io.SEEK_END)
            self.buffer.write(chunk["PayloadPart"]["Bytes"])
