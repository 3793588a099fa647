"""Storage backends: the Backend interface (base.py) and its implementations.

``DiskBackend`` serves a local directory; see disk.py. Import it from here or from disk.py.
"""

from __future__ import annotations

from .base import Backend
from .disk import DiskBackend

__all__ = ["Backend", "DiskBackend"]
