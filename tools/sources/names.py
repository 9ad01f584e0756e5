"""The names of the document sources, defined once: the spec, the reader, the chat and the critic import
them from here."""

from __future__ import annotations

SOURCE_NAMES: tuple[str, ...] = ("local", "arxiv", "pubmed", "wikipedia", "web")
REMOTE_SOURCES = frozenset({"arxiv", "pubmed", "wikipedia", "web"})

# the words people use for each source (lower case) -> the source's name
SOURCE_WORDS: dict[str, str] = {
    "pubmed": "pubmed", "pub med": "pubmed", "medline": "pubmed",
    "arxiv": "arxiv", "arxiv.org": "arxiv",
    "wikipedia": "wikipedia", "wiki": "wikipedia", "wikipedia.org": "wikipedia",
    "web": "web", "the web": "web", "internet": "web", "the internet": "web", "web pages": "web",
    "local": "local", "local documents": "local", "local files": "local", "local docs": "local",
    "my documents": "local", "my files": "local", "my docs": "local", "our documents": "local",
}
