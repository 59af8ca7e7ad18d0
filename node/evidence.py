"""Finding, checking and hashing the evidence files an import names.

An import names evidence by paths relative to its own folder. `FolderEvidence`
refuses anything that leaves that folder: `..`, absolute paths (checked
lexically by `node.importformat`) and symbolic links that resolve outside it;
it accepts only regular files within the size limit. `StagedEvidence` serves
files that arrived in an Ingest stream and were spooled to disk.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from node.blobstore import sha256_file


@dataclass(frozen=True, slots=True)
class ResolvedEvidence:
    file: Path
    sha256: str
    size: int


class EvidenceProblem(Exception):
    """Why an evidence path cannot be used; the message is the reason."""


class EvidenceResolver(Protocol):
    def resolve(self, path: str) -> ResolvedEvidence:
        """The file for `path`, hashed; raises EvidenceProblem."""
        ...


class FolderEvidence:
    def __init__(self, folder: Path, *, max_bytes: int) -> None:
        self._folder = folder.resolve()
        self._max = max_bytes
        self._cache: dict[str, ResolvedEvidence] = {}

    def resolve(self, path: str) -> ResolvedEvidence:
        if path in self._cache:
            return self._cache[path]
        candidate = self._folder / path
        try:
            real = candidate.resolve(strict=True)
        except FileNotFoundError:
            raise EvidenceProblem("file not found") from None
        except (OSError, RuntimeError):
            raise EvidenceProblem("file cannot be read") from None
        try:
            real.relative_to(self._folder)
        except ValueError:
            raise EvidenceProblem("leads outside the import folder (symbolic link)") from None
        try:
            st = real.stat()
        except OSError:
            raise EvidenceProblem("file cannot be read") from None
        if not stat.S_ISREG(st.st_mode):
            raise EvidenceProblem("not a regular file")
        if st.st_size > self._max:
            raise EvidenceProblem(f"larger than the limit of {self._max} bytes")
        try:
            digest, size = sha256_file(real)
        except OSError:
            raise EvidenceProblem("file cannot be read") from None
        if size > self._max:
            raise EvidenceProblem(f"larger than the limit of {self._max} bytes")
        resolved = ResolvedEvidence(real, digest, size)
        self._cache[path] = resolved
        return resolved


class StagedEvidence:
    """Evidence received in a stream, already spooled and hashed."""

    def __init__(self, files: dict[str, ResolvedEvidence]) -> None:
        self._files = files

    def resolve(self, path: str) -> ResolvedEvidence:
        try:
            return self._files[path]
        except KeyError:
            raise EvidenceProblem("file was not sent with the import") from None
