"""edgekit: optimize, measure, decide and govern a model for edge runtimes.

Example:
    >>> import edgekit
    >>> edgekit.__version__
    '0.1.0'
"""

from __future__ import annotations

__version__ = "0.1.0"
