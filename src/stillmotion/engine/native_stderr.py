"""Silencing what native libraries print straight to file descriptor 2.

TFLite and MediaPipe's graph print banners and warnings ("Created TensorFlow Lite XNNPACK delegate",
"Feedback manager requires ...") with no switch to turn them off, which would garble the CLI's
progress bar and its one-line errors. File descriptors are process-wide, so the redirect is shared:
the first thread to enter saves the real stderr, the last to leave restores it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_saved: int | None = None


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Point fd 2 at /dev/null for the duration; Python exceptions raised inside propagate as usual."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            try:
                _saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            except OSError:  # no stderr to silence
                _saved = None
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                os.dup2(_saved, 2)
                os.close(_saved)
                _saved = None
