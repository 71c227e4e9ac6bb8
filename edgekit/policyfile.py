"""Read the policy file (``edgekit.decide.policy`` parses it without touching files).

Example:
    >>> load_policy(Path("policy.yaml")).stages
"""

from __future__ import annotations

from pathlib import Path

from edgekit.decide.policy import Policy, policy_from_yaml
from edgekit.errors import ConfigError


def load_policy(path: Path, display: str | None = None) -> Policy:
    """Read and validate a policy file; ``display`` is how errors name it (params.yaml's ``policy.file``).

    Raises:
        ConfigError: the file is missing, or naming the dotted field, the bad value and what is accepted.
    """
    source = display or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError("<file>", source, "an existing policy file (params.yaml: policy.file)", source) from exc
    return policy_from_yaml(data, source)
