"""MediaPipe, imported once, without the parts of it the engine never uses.

``import mediapipe`` imports every legacy solution's drawing helpers, and with them matplotlib's
``pyplot``, and the audio tasks' ``sounddevice``: on the design machine 0.8 s of the 1.1 s the
import takes, paid by every process that renders (a CLI run, each of a worker's render children)
before its first frame. Neither is used by the engine. While MediaPipe imports, each is stood in for
by a deferred module, which imports the real one the first time anything in it is used: MediaPipe's
own plotting still works for whoever calls it, at the price it always had.

Its native logging is turned down and the banners it prints while importing are silenced
(``native_stderr``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import threading
import types
from collections.abc import Iterator

from stillmotion.engine.native_stderr import quiet_native_stderr

#: Modules MediaPipe imports at load time for features the engine does not use (3D landmark plots,
#: microphone capture), parents before their children.
_UNUSED = ("matplotlib", "matplotlib.pyplot", "sounddevice")

_lock = threading.Lock()


class _Deferred(types.ModuleType):
    """Stands in for a module until first used, then imports it and hands the attribute on."""

    def __getattr__(self, attribute: str) -> object:
        # Only reached for attributes this stand-in lacks: a use, not the import machinery.
        for name in _UNUSED:
            if isinstance(sys.modules.get(name), _Deferred):
                del sys.modules[name]
        return getattr(importlib.import_module(self.__name__), attribute)


@contextlib.contextmanager
def _deferred(names: tuple[str, ...]) -> Iterator[None]:
    """``names`` (those not imported yet) stood in for by ``_Deferred`` modules for the duration."""
    added = [name for name in names if name not in sys.modules]
    for name in added:
        sys.modules[name] = _Deferred(name)
        parent, _, child = name.rpartition(".")
        if parent in added:  # ``import a.b as c`` reads ``b`` off ``a``
            setattr(sys.modules[parent], child, sys.modules[name])
    try:
        yield
    finally:
        for name in added:
            if isinstance(sys.modules.get(name), _Deferred):
                del sys.modules[name]  # later imports by anyone else get the real module


@functools.cache
def mediapipe() -> types.ModuleType:
    """The ``mediapipe`` package, imported on the first call (see the module); thread-safe. A
    process that forks render children calls it first, so each child starts with it imported."""
    # Its native code logs through glog/absl: keep the CLI's stderr for progress and errors.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _lock, quiet_native_stderr(), _deferred(_UNUSED):
        import mediapipe

    return mediapipe
