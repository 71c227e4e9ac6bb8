"""edgekit in Jupyter: ``%load_ext edgekit`` registers the ``%edgekit`` magic.

Example:
    In [1]: %load_ext edgekit
    In [2]: %edgekit registry show
    In [3]: %edgekit doctor
"""

from __future__ import annotations

from edgekit.notebook.magics import load

__all__ = ["load"]
