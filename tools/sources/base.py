"""The interface every document source implements."""

from __future__ import annotations

from typing import Protocol

from tools.sources.documents import Document, Reference


class Source(Protocol):
    """A place documents come from. Failures raise `SourceError` with the item and the reason."""

    name: str

    def search(self, query: str, limit: int) -> list[Reference]:
        """References matching the query, best first, at most `limit`."""
        ...

    def fetch(self, reference: Reference) -> Document:
        """The document behind a reference, with its text extracted."""
        ...
