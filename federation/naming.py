"""Names every member derives the same way: log origins, note key names, witness names.

A member's transparency log is signed with its roster Ed25519 key under the
note key name `log_origin(state)` (which is also the checkpoint origin), and
it cosigns other members' checkpoints with the same key under the name
`witness_name(state)`. The three uses of one key are domain-separated by
their formats: DSSE signs "DSSEv1 ..." (PAE), a note signs the note text, a
cosignature signs "cosignature/v1\\ntime ...\\n" followed by the checkpoint.
"""

from __future__ import annotations

from crypto import signing
from crypto.checkpoint import CosignatureSigner, CosignatureVerifier
from crypto.note import Signer, Verifier


def log_origin(state: str) -> str:
    return f"compact-log/{state}"


def witness_name(state: str) -> str:
    return f"compact-witness/{state}"


def log_signer(state: str, key: signing.SigningKey) -> Signer:
    return Signer(log_origin(state), key)


def log_verifier(state: str, key: signing.PublicKey) -> Verifier:
    return Verifier(log_origin(state), key)


def witness_signer(state: str, key: signing.SigningKey) -> CosignatureSigner:
    return CosignatureSigner(witness_name(state), key)


def witness_verifier(state: str, key: signing.PublicKey) -> CosignatureVerifier:
    return CosignatureVerifier(witness_name(state), key)
