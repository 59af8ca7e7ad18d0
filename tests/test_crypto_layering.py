"""crypto/ depends on nothing of ours, and only its recipe modules touch the primitives.

DESIGN.md section 1: `crypto` uses nothing of ours. STYLE.md habit 10: only a few
modules in crypto/ touch PyNaCl, pysodium or cryptography.hazmat; everything else
calls typed recipes. Adding a module to the allow-list below is a reviewed decision.
"""

from __future__ import annotations

import ast
from pathlib import Path

CRYPTO = Path(__file__).resolve().parent.parent / "crypto"
OURS = ("node", "federation", "compact", "bench", "tests")
PRIMITIVES = ("nacl", "pysodium", "cryptography.hazmat")
# Modules allowed to call the primitive libraries directly.
RECIPES = {
    "blobs.py",
    "fields.py",
    "keystore.py",
    "ristretto.py",
    "sealing.py",
    "signing.py",
    "tls.py",
    "x25519.py",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules() -> list[Path]:
    found = sorted(CRYPTO.glob("*.py"))
    assert found
    return found


def test_crypto_imports_nothing_of_ours() -> None:
    for path in modules():
        bad = sorted(n for n in imports(path) if n.split(".")[0] in OURS)
        assert not bad, f"crypto/{path.name} imports {bad}"


def test_only_recipe_modules_touch_the_primitives() -> None:
    for path in modules():
        touched = sorted(n for n in imports(path) if n.startswith(PRIMITIVES))
        if touched:
            assert path.name in RECIPES, f"crypto/{path.name} calls {touched} directly"


def test_the_checks_see_imports() -> None:
    """The checks themselves can fail: a known recipe module is seen importing PyNaCl."""
    assert any(n.startswith("nacl") for n in imports(CRYPTO / "keystore.py"))
