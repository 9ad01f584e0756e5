"""Documents and the references that point at them, shared by every source."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reference:
    """A search hit: enough to fetch the document later and to say where it came from."""

    source: str  # "local", "arxiv", "pubmed", "wikipedia", "web"
    native_id: str  # the source's own id: a path in the docs folder, an arXiv id, a PMID, a page title, a URL
    title: str = ""
    uri: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Document:
    """Extracted text of one document with its provenance."""

    source: str
    native_id: str
    title: str
    text: str
    uri: str
    authors: tuple[str, ...] = ()
    published: str | None = None
    licence: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def doc_id(self) -> str:
        """Stable id from the source and its native id (the same document always gets the same id)."""
        digest = hashlib.sha1(f"{self.source}:{self.native_id}".encode()).hexdigest()[:12]
        return f"{self.source}-{digest}"

    def provenance(self) -> dict[str, Any]:
        """Flat provenance, as stored with every chunk and example."""
        return {
            "doc_id": self.doc_id,
            "source": self.source,
            "native_id": self.native_id,
            "title": self.title,
            "uri": self.uri,
            "authors": ", ".join(self.authors),
            "published": self.published or "",
            "licence": self.licence or "",
        }

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["authors"] = list(self.authors)
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Document:
        return cls(**{**record, "authors": tuple(record.get("authors", ()))})


class SourceError(Exception):
    """One reference or query failed for a stated reason; the job records it and goes on."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason
