"""Model kinds: what is specific to a sentence encoder (``embedding``) or a language model (``generation``).

``edgekit.tasks.base`` holds the ``Task`` interface and the registry; each kind is a folder with its ``Task``
(``task.py``, light), its backend interface, metrics and roofline model.

Example:
    >>> from edgekit.tasks.base import get_task
    >>> get_task("generation").stages[-1]
    'decoder_select'
"""
