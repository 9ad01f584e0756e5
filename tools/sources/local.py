"""Local documents: a folder (searched recursively) or a single file."""

from __future__ import annotations

from pathlib import Path

from tools.documents import Document, Reference, SourceError
from tools.text_extraction import SUPPORTED_SUFFIXES, extract_file


class LocalFolderSource:
    """Every supported file under a folder. The query is ignored: the user chose these files,
    and the curator judges their relevance."""

    name = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def search(self, query: str, limit: int) -> list[Reference]:
        if not self.root.exists():
            raise SourceError(str(self.root), "no such file or folder")
        if self.root.is_file():
            files = [self.root]
        else:
            files = sorted(
                p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        references = [
            Reference(
                source=self.name, native_id=str(p.resolve()), title=p.stem, uri=p.resolve().as_uri()
            )
            for p in files
        ]
        return references[:limit]

    def fetch(self, reference: Reference) -> Document:
        path = Path(reference.native_id)
        text, title = extract_file(path)
        return Document(
            source=self.name,
            native_id=reference.native_id,
            title=title,
            text=text,
            uri=reference.uri,
            metadata={"file_name": path.name, "suffix": path.suffix.lower()},
        )

    @staticmethod
    def supported(path: Path) -> bool:
        return path.suffix.lower() in SUPPORTED_SUFFIXES
