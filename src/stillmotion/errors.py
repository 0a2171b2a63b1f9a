"""The errors stillmotion raises on purpose. Each message says what was wrong and what is allowed.

``InputError`` and its subclasses are the user's to fix (CLI exit status 2, HTTP 400 at submit or a
FAILED job); anything else escaping the engine is our bug.
"""


class StillmotionError(Exception):
    """Base class of every deliberate stillmotion error."""


class InputError(StillmotionError):
    """The inputs cannot be used: unreadable, of an unsupported format, or beyond a documented limit."""


class MediaError(InputError):
    """A photo or video file that is missing, unreadable, corrupt, empty or of a format we do not take."""


class LimitError(InputError):
    """An input beyond a documented limit (pixels, duration, file size)."""


class NoFaceError(InputError):
    """No usable face where one is needed (the photo, or every frame of the driving video)."""


class SafetyBlocked(InputError):
    """The safety checker blocked the photo (surfaces as a FAILED request, as content blocks do)."""
