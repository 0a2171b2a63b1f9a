"""Documented limits on inputs, shared by the engine, the input fetcher and the API.

They bound memory and time per request; README.md lists them for users.
"""

from __future__ import annotations

MB = 1024 * 1024

#: Largest photo file accepted, in bytes.
MAX_IMAGE_BYTES = 30 * MB
#: Largest photo accepted, in pixels (width × height): 8K × 5K.
MAX_IMAGE_PIXELS = 40_000_000
#: Largest driving video file accepted, in bytes.
MAX_VIDEO_BYTES = 500 * MB
#: Largest driving video frame accepted, in pixels: 4K UHD.
MAX_VIDEO_PIXELS = 3840 * 2160
#: Longest driving video accepted, in seconds.
MAX_VIDEO_SECONDS = 600.0
#: Smallest photo side that still has a usable face, in pixels.
MIN_IMAGE_SIDE = 64
