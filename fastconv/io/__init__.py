"""The I/O tier: every byte fastconv reads from or writes to a user's file passes through here.

* ``errors``: ``InvalidModelFileError``, the one error a bad file raises.
* ``files``: opening what a user names as input (regular files only, sizes known before
  reading) and checking output paths against a command's inputs.
* ``atomic``: the one writer: a temporary file in the target's folder, flushed to disk, renamed
  over the target, the folder flushed; an interrupted write leaves the previous file intact.

Formats (``fastconv.saving``, ``fastconv.keras_io``, ``fastconv.onnx``) sit on top of these
modules; this tier imports nothing from the rest of fastconv.
"""
