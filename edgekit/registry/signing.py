"""Signatures over registry events with OpenSSH's ``ssh-keygen -Y`` (no cryptography of our own).

Who signed is what ``ssh-keygen -Y find-principals`` finds for the signature's key in the allowed
signers file the policy names (OpenSSH's ALLOWED SIGNERS format, committed and reviewed like code):
never git config, never an environment variable.

Example:
    >>> signature = sign(payload, Path("~/.ssh/id_ed25519").expanduser())
    >>> verify(payload, signature, Path(".edgekit/allowed_signers"))
    {'principal': 'alice@example.com', 'key': 'SHA256:…'}
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgekit.registry.errors import SignatureError

NAMESPACE = "edgekit-registry"
_KEY = re.compile(r"key (SHA256:[A-Za-z0-9+/=]+)")


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise SignatureError("ssh-keygen is not installed", "install OpenSSH's client (apt-get install openssh-client)")
    return found


def sign(payload: bytes, key: Path) -> str:
    """An armored SSH signature of ``payload`` by the private key at ``key`` (or its public key, the private
    one in ssh-agent).

    Raises:
        SignatureError: the key is missing or ssh-keygen refused it.
    """
    if not key.is_file():
        raise SignatureError(f"signing key {key} does not exist",
                             "pass --key with your SSH private key (ssh-keygen -t ed25519 makes one)")
    done = subprocess.run([_ssh_keygen(), "-q", "-Y", "sign", "-f", str(key), "-n", NAMESPACE], input=payload,
                          capture_output=True, stdin=None)
    if done.returncode or b"BEGIN SSH SIGNATURE" not in done.stdout:
        raise SignatureError(f"ssh-keygen could not sign with {key}: {done.stderr.decode(errors='replace').strip()}",
                             "use an unencrypted key or load it into ssh-agent")
    return done.stdout.decode()


def verify(payload: bytes, signature: str, allowed_signers: Path) -> dict[str, str]:
    """The principal and key fingerprint of a good signature by an allowed key.

    Raises:
        SignatureError: the signature is malformed, does not match ``payload``, or its key is not allowed.
    """
    if not allowed_signers.is_file():
        raise SignatureError(f"the allowed signers file {allowed_signers} does not exist",
                             "create it (see README: signed approvals) and commit it")
    key = hashlib.sha256(b"\0".join([payload, signature.encode(), allowed_signers.read_bytes()])).hexdigest()
    if key not in _VERIFIED:
        if len(_VERIFIED) > 10_000:
            _VERIFIED.clear()
        _VERIFIED[key] = _verify(payload, signature, allowed_signers)
    return dict(_VERIFIED[key])


# Good verdicts by (payload, signature, allowed signers' bytes): the same three always give the same answer,
# and `verify` re-checks every approval on each run (three ssh-keygen processes each).
_VERIFIED: dict[str, dict[str, str]] = {}


def _verify(payload: bytes, signature: str, allowed_signers: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as folder:
        sig = Path(folder) / "event.sig"
        sig.write_text(signature)
        key = _fingerprint(payload, sig)
        principals = _principals(sig, allowed_signers)
        if not principals:
            raise SignatureError(f"signed by a key that is not in {allowed_signers} ({key})",
                                 "only keys in the allowed signers file can approve; add the key in a reviewed commit")
        principal = principals[0]
        done = subprocess.run([_ssh_keygen(), "-Y", "verify", "-f", str(allowed_signers), "-I", principal, "-n", NAMESPACE,
                               "-s", str(sig)], input=payload, capture_output=True)
        if done.returncode:
            raise SignatureError(f"the signature by {principal} does not verify ({done.stderr.decode(errors='replace').strip()})",
                                 "the event was changed after it was signed")
    return {"principal": principal, "key": key}


def _fingerprint(payload: bytes, sig: Path) -> str:
    """The signing key's fingerprint, checking that the signature matches ``payload`` (any key)."""
    done = subprocess.run([_ssh_keygen(), "-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig)], input=payload,
                          capture_output=True)
    found = _KEY.search(done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace"))
    if done.returncode or not found:
        raise SignatureError(f"the signature does not match the event ({done.stderr.decode(errors='replace').strip() or 'bad signature'})",
                             "the event was changed after it was signed, or the signature is not an SSH signature")
    return found.group(1)


def _principals(sig: Path, allowed_signers: Path) -> list[str]:
    done = subprocess.run([_ssh_keygen(), "-Y", "find-principals", "-s", str(sig), "-f", str(allowed_signers)],
                          capture_output=True, text=True)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def public_key_line(key: Path) -> str:
    """The public key of a private key file, as ssh-keygen prints it (for an allowed signers line)."""
    done = subprocess.run([_ssh_keygen(), "-y", "-f", str(key)], capture_output=True, text=True)
    if done.returncode:
        raise SignatureError(f"cannot read the public key of {key}: {done.stderr.strip()}", "pass an SSH private key file")
    return done.stdout.strip()
