"""Text out of local files (.md .txt .html .pdf), with a typed error for anything unreadable."""

from __future__ import annotations

from pathlib import Path

from tools.documents import SourceError

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")
_BOILERPLATE_TAGS = ("script", "style", "nav", "header", "footer", "aside", "form", "noscript")


def decode_text(raw: bytes, what: str) -> str:
    """Decode bytes as UTF-8, else Windows-1252/Latin-1; binary content is refused."""
    if b"\x00" in raw:
        raise SourceError(what, "binary content (NUL bytes), not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


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
    """Text of every page of a PDF; encrypted or corrupt files raise SourceError."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise SourceError(str(path), "encrypted PDF (no password given)")
        pages = [page.extract_text() or "" for page in reader.pages]
    except SourceError:
        raise
    except (PdfReadError, ValueError, KeyError, OSError) as error:
        raise SourceError(str(path), f"corrupt PDF: {error}") from error
    return "\n\n".join(pages)


def extract_file(path: Path) -> tuple[str, str]:
    """(text, title) of a local file; raises SourceError with the reason when it cannot be read."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SourceError(str(path), f"unsupported file type {suffix!r} (supported: {', '.join(SUPPORTED_SUFFIXES)})")
    try:
        if suffix == ".pdf":
            text, title = pdf_to_text(path), ""
        else:
            raw = path.read_bytes()
            text = decode_text(raw, str(path))
            title = ""
            if suffix in (".html", ".htm"):
                text, title = html_to_text(text)
    except PermissionError as error:
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
