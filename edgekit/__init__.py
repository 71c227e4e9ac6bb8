"""edgekit: optimize, measure, decide and govern a model for edge runtimes.

Example:
    >>> import edgekit
    >>> edgekit.__version__
    '0.1.0'
"""

from __future__ import annotations

__version__ = "0.1.0"

from edgekit import importtrace as _importtrace  # noqa: E402  (needs nothing above but the version)

_importtrace.install()  # a no-op unless EDGEKIT_IMPORT_TRACE is set (tests of the DVC deps)


def load_ipython_extension(ipython) -> None:
    """``%load_ext edgekit``: the ``%edgekit`` magics and rich displays (``edgekit.notebook``)."""
    from edgekit.notebook import load

    load(ipython)
