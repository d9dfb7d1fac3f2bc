"""landscape: loss surfaces, Hessian spectra and training dynamics of small models.

The package never imports streamlit; the app in ``app.py`` and ``pages/`` is a thin layer
over it. Results are plain dataclasses holding numpy arrays plus a ``meta`` dict.
"""

from landscape.core.errors import LandscapeError

__all__ = ["LandscapeError"]
__version__ = "0.1.0"
