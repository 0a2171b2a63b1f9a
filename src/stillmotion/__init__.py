"""stillmotion: transfer the motion and the audio of a driving video onto a still photo.

``import stillmotion`` stays light: the SDK (and httpx behind it) loads on first use of its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stillmotion.params import AnimateParams

if TYPE_CHECKING:
    from stillmotion.client import (
        APIError,
        AuthenticationError,
        BadRequest,
        Client,
        InferenceFailed,
        InferenceTimeout,
        InsufficientCredits,
        Job,
        NotFound,
        PermissionDenied,
        RateLimited,
    )

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AnimateParams",
    "AuthenticationError",
    "BadRequest",
    "Client",
    "InferenceFailed",
    "InferenceTimeout",
    "InsufficientCredits",
    "Job",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "__version__",
]
_SDK_NAMES = frozenset(__all__) - {"AnimateParams", "__version__"}


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        from stillmotion import client

        return getattr(client, name)
    raise AttributeError(f"module 'stillmotion' has no attribute {name!r}")
