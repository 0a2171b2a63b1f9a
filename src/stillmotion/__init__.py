"""stillmotion: transfer the motion and the audio of a driving video onto a still photo."""

from stillmotion.params import AnimateParams

__all__ = ["AnimateParams", "__version__"]
__version__ = "0.1.0"
