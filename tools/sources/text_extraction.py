"""Text out of local files (.md .txt .html .pdf), with a typed error for anything unreadable.

A bad file never sinks a job: files over MAX_FILE_BYTES are refused before they are read (and reads stop
there even if the file grows), binary content under a text extension is refused, and anything pypdf
raises on a hostile PDF (LimitReachedError for a decompression bomb, a malformed stream) becomes a
SourceError, which the researcher records per file while the job goes on."""

from __future__ import annotations

import re
from pathlib import Path

from tools.sources.common import join_pages
from tools.sources.documents import SourceError

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")
MAX_FILE_BYTES = 64 * 2**20  # one document; a book-length PDF is ~10 MB
MAX_CONTROL_SHARE = 0.05  # more control characters than this (besides tab/newline/form feed) is not text
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufffd]")
_BOILERPLATE_TAGS = ("script", "style", "nav", "header", "footer", "aside", "form", "noscript")


def decode_text(raw: bytes, what: str) -> str:
    """Decode bytes as UTF-8, else Windows-1252/Latin-1; binary content is refused."""
    if b"\x00" in raw:
        raise SourceError(what, "binary content (NUL bytes), not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    sample = text[:65536]
    if sample and len(_CONTROL.findall(sample)) > MAX_CONTROL_SHARE * len(sample):
        raise SourceError(what, "binary content (control characters), not text")
    return text


def read_capped(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, refused when it is (or grows) larger than `limit`: never a whole-file read."""
    size = path.stat().st_size
    if size > limit:
        raise SourceError(str(path), f"{_megabytes(size)}, more than the {_megabytes(limit)} limit for one file")
    with path.open("rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise SourceError(str(path), f"grew past the {_megabytes(limit)} limit for one file while being read")
    return raw


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.0f} MB" if size >= 2**20 else f"{size} bytes"


def html_to_text(html: str) -> tuple[str, str]:
    """Main text and title of an HTML page: boilerplate tags dropped, <article>/<main> preferred."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(strip=True) if soup.title else ""
    for tag in soup(_BOILERPLATE_TAGS):
        tag.decompose()
    body = soup.find("article") or soup.find("main") or soup.body or soup
    blocks = []
    for element in body.find_all(["h1", "h2", "h3", "h4", "p", "li", "pre", "blockquote"]):
        text = element.get_text(" ", strip=True)
        if not text:
            continue
        if element.name.startswith("h"):
            text = "#" * int(element.name[1]) + " " + text
        elif element.name == "li":
            text = "- " + text
        blocks.append(text)
    if not blocks:
        blocks = [body.get_text("\n", strip=True)]
    return "\n\n".join(blocks), title


def pdf_to_text(path: Path) -> str:
    """Text of every page of a PDF; encrypted, corrupt or hostile files raise SourceError."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    raw = read_capped(path)
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise SourceError(str(path), "encrypted PDF (no password given)")
        pages = [page.extract_text() or "" for page in reader.pages]
    except SourceError:
        raise
    except LimitReachedError as error:
        raise SourceError(str(path), f"PDF refused: it exceeds pypdf's safety limits, likely a decompression "
                                     f"bomb ({error})") from error
    except (PyPdfError, ValueError, KeyError, OSError) as error:
        raise SourceError(str(path), f"corrupt PDF: {error}") from error
    except Exception as error:  # a malformed PDF trips pypdf in many ways; recorded per file
        raise SourceError(str(path), f"unreadable PDF ({type(error).__name__}: {error})") from error
    return join_pages(pages)


def extract_file(path: Path) -> tuple[str, str]:
    """(text, title) of a local file; raises SourceError with the reason when it cannot be read."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SourceError(str(path), f"unsupported file type {suffix!r} (supported: {', '.join(SUPPORTED_SUFFIXES)})")
    try:
        if suffix == ".pdf":
            text, title = pdf_to_text(path), ""
        else:
            text = decode_text(read_capped(path), str(path))
            title = ""
            if suffix in (".html", ".htm"):
                text, title = html_to_text(text)
    except OSError as error:  # no permission, a dangling link, a disk error
        raise SourceError(str(path), f"not readable: {error}") from error
    if not text.strip():
        raise SourceError(str(path), "no text in the file (empty or image-only)")
    return text, title or _title_from_text(text) or path.stem.replace("-", " ").replace("_", " ")


def _title_from_text(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line:
            return line[:80] if len(line) <= 80 else ""
    return ""
