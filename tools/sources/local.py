"""Local documents: a folder (searched recursively) or a single file.

Only files inside the folder are read: a symbolic link that leads out of it is skipped with its reason
(a docs folder must not become a way to read the rest of the disk), and so is a file over the size cap
(checked from its metadata, before any read; a sparse 1 GB file costs nothing)."""

from __future__ import annotations

from pathlib import Path

from tools.sources.common import SearchReport
from tools.sources.documents import Document, Reference, SourceError
from tools.sources.text_extraction import MAX_FILE_BYTES, SUPPORTED_SUFFIXES, extract_file


class LocalFolderSource:
    """Every supported file under a folder. The query is ignored: the user chose these files,
    and the curator judges their relevance. Files left out are in `last_report.skipped`."""

    name = "local"

    def __init__(self, root: str | Path, max_file_bytes: int = MAX_FILE_BYTES) -> None:
        self.root = Path(root).expanduser()
        self.max_file_bytes = max_file_bytes
        self.last_report: SearchReport | None = None

    def search(self, query: str, limit: int) -> list[Reference]:
        if not self.root.exists():
            raise SourceError(str(self.root), "no such file or folder")
        if self.root.is_file():
            files = [self.root]
        else:
            files = sorted(
                p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        kept, skipped = [], []
        for path in files:
            problem = self._problem(path)
            if problem:
                skipped.append((str(path), problem))
            else:
                kept.append(path.resolve())
        references = [Reference(source=self.name, native_id=self._native_id(p), title=p.stem, uri=p.as_uri())
                      for p in kept]
        self.last_report = SearchReport(self.name, query, total=len(files), returned=min(len(references), limit),
                                        skipped=tuple(skipped))
        return references[:limit]

    def _problem(self, path: Path) -> str:
        """Why this file is left out ("" when it is read)."""
        resolved, root = path.resolve(), self.root.resolve()
        if self.root.is_dir() and not resolved.is_relative_to(root):
            return f"a link to {resolved}, outside the docs folder {root}: not followed"
        size = resolved.stat().st_size
        if size > self.max_file_bytes:
            return (f"{size / 2**20:.0f} MB, more than the {self.max_file_bytes / 2**20:.0f} MB limit for one "
                    "file: not read")
        return ""

    def _native_id(self, path: Path) -> str:
        """The file's path inside the docs folder (its name when the root is the file): the document ids, and
        so the job's split and its data set, must not depend on where the folder lies (a test's or a user's
        copy elsewhere split the same documents differently)."""
        return path.name if self.root.is_file() else path.relative_to(self.root.resolve()).as_posix()

    def _path(self, native_id: str) -> Path:
        return self.root.resolve() if self.root.is_file() else self.root.resolve() / native_id

    def fetch(self, reference: Reference) -> Document:
        path = self._path(reference.native_id)
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
