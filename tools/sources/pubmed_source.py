"""PubMed abstracts through NCBI E-utilities: esearch (usehistory) then efetch XML.

Requests go through our HTTP layer (Bio.Entrez's own transport has no timeout and no base
URL option); the XML is parsed with `Bio.Entrez.read` on an in-memory file. Every request
is a GET (so it is cached) and carries `tool`, `email` and `api_key` when set. NCBI allows
3 requests/s without an API key and 10/s with one; the E-utilities host is paced to match.

Records come back as `Document`s whose text is the title plus the abstract, with the
structured-abstract labels kept ("METHODS: …"); MeSH terms, keywords, journal, year, PMID
and DOI go to the metadata. The esearch `TranslationSet` (how PubMed mapped the query onto
MeSH and fields) is exposed for query expansion through `translate()`.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from tools.sources.common import SearchReport, join_paragraphs, squash_whitespace
from tools.sources.documents import Document, Reference, SourceError
from tools.sources.http import HttpClient, HttpStatusError, NetworkUnavailable, host_key

DEFAULT_BASE_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
INTERVAL_WITHOUT_KEY_S = 0.34  # NCBI: at most 3 requests per second without an API key
INTERVAL_WITH_KEY_S = 0.1  # ... and 10 per second with one
DOCTYPE_DTD = re.compile(rb"<!DOCTYPE[^>]*?\"([^\"]+\.dtd)\"", re.IGNORECASE)
INLINE_TAG = re.compile(r"</?(i|b|u|sup|sub|em|strong|mml:[a-z]+)(\s[^>]*)?>", re.IGNORECASE)
MESH_PHRASE = re.compile(r"\"([^\"]+)\"\[MeSH Terms\]", re.IGNORECASE)


@dataclass(frozen=True)
class PubMedSettings:
    """Where and as whom to ask NCBI."""

    base_url: str = DEFAULT_BASE_URL
    email: str | None = None  # NCBI asks for a contact address
    api_key: str | None = None  # raises the rate limit from 3/s to 10/s
    tool: str = "ftagent"
    require_abstract: bool = True  # records without an abstract are skipped (and reported)


@dataclass(frozen=True)
class PubMedTranslation:
    """How PubMed understood a query: the esearch TranslationSet and QueryTranslation."""

    query: str
    count: int
    query_translation: str
    translations: tuple[tuple[str, str], ...] = ()  # (from, to) pairs

    def mesh_terms(self) -> list[str]:
        """MeSH headings PubMed mapped the query onto (for query expansion)."""
        found = [m for _, to in self.translations for m in MESH_PHRASE.findall(to)]
        return list(dict.fromkeys(found))


@dataclass(frozen=True)
class EsearchResult:
    """The parts of an esearch answer the source uses."""

    count: int
    ids: tuple[str, ...]
    webenv: str | None
    query_key: str | None
    translation: PubMedTranslation
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PubMedArticle:
    """One parsed PubMed record."""

    pmid: str
    title: str
    sections: tuple[tuple[str, str], ...]  # (label, text); label "" for unstructured abstracts
    authors: tuple[str, ...]
    journal: str
    year: str
    published: str
    doi: str
    mesh_terms: tuple[str, ...]
    keywords: tuple[str, ...]
    copyright: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def abstract_text(self) -> str:
        """The abstract, one paragraph per section, labelled when the abstract is structured."""
        return join_paragraphs(
            *(f"{label}: {text}" if label else text for label, text in self.sections)
        )


def bundled_dtds() -> set[str]:
    """File names of the DTDs Bio.Entrez has on disk (it downloads any other one)."""
    from Bio import Entrez

    names = {p.name for p in (Path(Entrez.__file__).parent / "DTDs").glob("*")}
    if Entrez.local_cache:
        names |= {p.name for p in Path(Entrez.local_cache).glob("**/*.dtd")}
    return names


def read_entrez(content: bytes, what: str) -> Any:
    """Parse E-utilities XML with Bio.Entrez; anything else becomes a `SourceError`."""
    from Bio import Entrez
    from Bio.Entrez.Parser import CorruptedXMLError, NotXMLError

    head = content[:2048]
    if re.search(rb"<html|<!DOCTYPE html", head, re.IGNORECASE):
        title = re.search(rb"<title>(.*?)</title>", head, re.IGNORECASE | re.DOTALL)
        shown = title.group(1).decode("utf-8", "replace").strip() if title else "untitled"
        raise SourceError(what, f"NCBI sent an HTML page ({shown!r}) instead of XML")
    dtd = DOCTYPE_DTD.search(head)
    if dtd and Path(dtd.group(1).decode()).name not in bundled_dtds():
        raise SourceError(
            what,
            f"unknown DTD {dtd.group(1).decode()}; Bio.Entrez would download "
            "it and nothing is downloaded at run time (upgrade biopython)",
        )
    try:
        return Entrez.read(io.BytesIO(content), validate=False)
    except NotXMLError as exc:
        raise SourceError(what, f"NCBI sent something that is not XML: {exc}") from None
    except CorruptedXMLError as exc:
        raise SourceError(what, f"malformed XML: {exc}") from None
    except RuntimeError as exc:  # Bio.Entrez raises the text of an <ERROR> element this way
        raise SourceError(what, f"NCBI error: {exc}") from None
    except (ValueError, ExpatError) as exc:
        raise SourceError(what, f"unparseable E-utilities answer: {exc}") from None


def parse_esearch(content: bytes, query: str) -> EsearchResult:
    """Count, ids, history handles and translation of an esearch answer."""
    record = read_entrez(content, f"PubMed esearch {query!r}")
    if "ERROR" in record:
        raise SourceError(f"PubMed esearch {query!r}", f"NCBI error: {record['ERROR']}")
    translations = tuple((str(t["From"]), str(t["To"])) for t in record.get("TranslationSet", []))
    count = int(record.get("Count", 0))
    translation = PubMedTranslation(
        query, count, str(record.get("QueryTranslation", "")), translations
    )
    return EsearchResult(
        count=count,
        ids=tuple(str(i) for i in record.get("IdList", [])),
        webenv=str(record["WebEnv"]) if "WebEnv" in record else None,
        query_key=str(record["QueryKey"]) if "QueryKey" in record else None,
        translation=translation,
        warnings=_esearch_warnings(record),
    )


def _esearch_warnings(record: Any) -> tuple[str, ...]:
    """Human-readable ErrorList/WarningList entries (phrase not found, no items …)."""
    notes: list[str] = []
    for group in ("ErrorList", "WarningList"):
        for kind, values in dict(record.get(group, {})).items():
            notes.extend(f"{kind}: {value}" for value in values)
    return tuple(notes)


def parse_articles(content: bytes, what: str = "PubMed efetch") -> list[PubMedArticle]:
    """PubMed records in an efetch PubmedArticleSet (book articles are left out)."""
    record = read_entrez(content, what)
    if not hasattr(record, "get") or "PubmedArticle" not in record:
        raise SourceError(what, "answer is not a PubmedArticleSet")
    return [parse_article(article) for article in record["PubmedArticle"]]


def clean_inline(text: Any) -> str:
    """Plain text from a PubMed string that may carry inline HTML (<i>, <sup>) and entities."""
    return squash_whitespace(html.unescape(INLINE_TAG.sub("", str(text))))


def parse_article(article: Any) -> PubMedArticle:
    """One `PubmedArticle` element (as Bio.Entrez parsed it) to a `PubMedArticle`."""
    citation = article["MedlineCitation"]
    body = citation["Article"]
    journal = body.get("Journal", {})
    abstract = body.get("Abstract", {})
    sections = tuple(
        (str(getattr(part, "attributes", {}).get("Label", "")), clean_inline(part))
        for part in abstract.get("AbstractText", [])
        if clean_inline(part)
    )
    pub_date = journal.get("JournalIssue", {}).get("PubDate", {})
    year = _year(pub_date)
    return PubMedArticle(
        pmid=str(citation["PMID"]),
        title=clean_inline(body.get("ArticleTitle", "")),
        sections=sections,
        authors=tuple(_author_name(a) for a in body.get("AuthorList", []) if _author_name(a)),
        journal=clean_inline(journal.get("Title", "")),
        year=year,
        published=_published(body, year),
        doi=_doi(article, body),
        mesh_terms=tuple(str(h["DescriptorName"]) for h in citation.get("MeshHeadingList", [])),
        keywords=tuple(str(k) for group in citation.get("KeywordList", []) for k in group),
        copyright=clean_inline(abstract.get("CopyrightInformation", "")),
    )


def _author_name(author: Any) -> str:
    """ "ForeName LastName", or the collective name of a group author."""
    if "CollectiveName" in author:
        return clean_inline(author["CollectiveName"])
    return " ".join(str(author[k]) for k in ("ForeName", "LastName") if author.get(k)).strip()


def _year(pub_date: Any) -> str:
    """The year of a PubDate (Year, or the first year in a MedlineDate such as '1998 Dec-1999')."""
    if pub_date.get("Year"):
        return str(pub_date["Year"])
    match = re.search(r"\d{4}", str(pub_date.get("MedlineDate", "")))
    return match.group(0) if match else ""


def _published(body: Any, year: str) -> str:
    """ISO date of electronic publication when given, else the journal year."""
    for date in body.get("ArticleDate", []):
        if all(date.get(k) for k in ("Year", "Month", "Day")):
            return f"{date['Year']}-{int(date['Month']):02d}-{int(date['Day']):02d}"
    return year


def _doi(article: Any, body: Any) -> str:
    """DOI from the ArticleIdList, else from ELocationID."""
    for article_id in article.get("PubmedData", {}).get("ArticleIdList", []):
        if getattr(article_id, "attributes", {}).get("IdType") == "doi":
            return str(article_id)
    for location in body.get("ELocationID", []):
        if getattr(location, "attributes", {}).get("EIdType") == "doi":
            return str(location)
    return ""


def article_reference(article: PubMedArticle) -> Reference:
    """A Reference carrying the parsed record, so `fetch` needs no further request."""
    return Reference(
        source="pubmed",
        native_id=article.pmid,
        title=article.title,
        uri=f"https://pubmed.ncbi.nlm.nih.gov/{article.pmid}/",
        metadata=article_metadata(article),
    )


def article_metadata(article: PubMedArticle) -> dict[str, Any]:
    """JSON-friendly metadata of a record."""
    return {
        "pmid": article.pmid,
        "doi": article.doi,
        "journal": article.journal,
        "year": article.year,
        "published": article.published,
        "authors": list(article.authors),
        "mesh_terms": list(article.mesh_terms),
        "keywords": list(article.keywords),
        "abstract_sections": [{"label": label, "text": text} for label, text in article.sections],
        "copyright": article.copyright,
    }


def article_document(reference: Reference) -> Document:
    """The Document for a reference that carries a parsed record."""
    meta = reference.metadata
    sections = [(s["label"], s["text"]) for s in meta["abstract_sections"]]
    if not sections:
        raise SourceError(f"pubmed:{reference.native_id}", "PubMed record has no abstract")
    abstract = join_paragraphs(*(f"{lab}: {txt}" if lab else txt for lab, txt in sections))
    return Document(
        source="pubmed",
        native_id=reference.native_id,
        title=reference.title,
        text=join_paragraphs(reference.title, abstract),
        uri=reference.uri,
        authors=tuple(meta["authors"]),
        published=meta["published"] or None,
        licence=meta["copyright"] or "NLM PubMed record; abstract rights rest with the publisher",
        metadata=dict(meta),
    )


class PubMedSource:
    """`Source` for PubMed. Failures raise `SourceError`; the last search's story is `last_report`."""

    name = "pubmed"

    def __init__(self, http: HttpClient, settings: PubMedSettings | None = None) -> None:
        self.http = http
        self.settings = settings or PubMedSettings()
        self.last_report: SearchReport | None = None
        interval = INTERVAL_WITH_KEY_S if self.settings.api_key else INTERVAL_WITHOUT_KEY_S
        http.set_min_interval(host_key(self.settings.base_url), interval)

    def search(self, query: str, limit: int) -> list[Reference]:
        """Records matching `query` (PubMed's order), at most `limit`; skipped ones are reported."""
        found = self.esearch(query, limit)
        articles = self._efetch_found(found, limit) if found.ids else []
        keep, skipped = self._keep(articles)
        references = [article_reference(article) for article in keep][:limit]
        reason = "" if references else self._empty_reason(found, skipped)
        self.last_report = SearchReport(
            self.name,
            query,
            found.count,
            len(references),
            reason,
            tuple(skipped),
            {
                "query_translation": found.translation.query_translation,
                "translations": [list(pair) for pair in found.translation.translations],
            },
        )
        return references

    def translate(self, query: str) -> PubMedTranslation:
        """How PubMed maps `query` onto MeSH and fields (an esearch with retmax=0)."""
        return self.esearch(query, 0).translation

    def fetch(self, reference: Reference) -> Document:
        """The title + abstract document for a reference (one efetch when it carries no record)."""
        if "abstract_sections" not in reference.metadata:
            articles = self.efetch_ids([reference.native_id])
            if not articles:
                raise SourceError(f"pubmed:{reference.native_id}", "PubMed has no such record")
            reference = article_reference(articles[0])
        return article_document(reference)

    def esearch(self, query: str, retmax: int) -> EsearchResult:
        """One esearch call with usehistory=y."""
        params = {
            "db": "pubmed",
            "term": query,
            "retmax": str(retmax),
            "usehistory": "y",
            "retmode": "xml",
        }
        return parse_esearch(self._get("esearch.fcgi", params, f"PubMed esearch {query!r}"), query)

    def efetch_ids(self, pmids: list[str]) -> list[PubMedArticle]:
        """Records for explicit PMIDs."""
        params = {"db": "pubmed", "id": ",".join(pmids), "retmode": "xml", "rettype": "abstract"}
        what = f"PubMed efetch {','.join(pmids)[:80]}"
        return parse_articles(self._get("efetch.fcgi", params, what), what)

    def _efetch_found(self, found: EsearchResult, limit: int) -> list[PubMedArticle]:
        """Fetch the first `limit` hits through the history server, or by id without one."""
        if not (found.webenv and found.query_key):
            return self.efetch_ids(list(found.ids[:limit]))
        params = {
            "db": "pubmed",
            "query_key": found.query_key,
            "WebEnv": found.webenv,
            "retstart": "0",
            "retmax": str(limit),
            "retmode": "xml",
            "rettype": "abstract",
        }
        what = f"PubMed efetch history {found.webenv}#{found.query_key}"
        try:
            return parse_articles(self._get("efetch.fcgi", params, what), what)
        except NetworkUnavailable:
            raise
        except SourceError:
            # The history entry may have expired (a cached esearch, a fresh efetch): ask by id.
            return self.efetch_ids(list(found.ids[:limit]))

    def _keep(
        self, articles: list[PubMedArticle]
    ) -> tuple[list[PubMedArticle], list[tuple[str, str]]]:
        """Articles worth a document, and (pmid, reason) for the others."""
        if not self.settings.require_abstract:
            return articles, []
        keep = [a for a in articles if a.sections]
        skipped = [(a.pmid, "no abstract") for a in articles if not a.sections]
        return keep, skipped

    def _get(self, endpoint: str, params: dict[str, str], what: str) -> bytes:
        """GET an E-utility with the identifying parameters NCBI asks for."""
        identity = {
            "tool": self.settings.tool,
            "email": self.settings.email,
            "api_key": self.settings.api_key,
        }
        params = {**params, **{k: v for k, v in identity.items() if v}}
        try:
            return self.http.get(
                self.settings.base_url.rstrip("/") + "/" + endpoint, params=params
            ).content
        except HttpStatusError as exc:
            raise SourceError(what, f"{exc.reason}: {exc.body[:200]!r}") from None

    @staticmethod
    def _empty_reason(found: EsearchResult, skipped: list[tuple[str, str]]) -> str:
        """Why a search produced nothing."""
        if found.count == 0:
            notes = "; ".join(found.warnings)
            return "PubMed found no records" + (f" ({notes})" if notes else "")
        if skipped:
            return f"all {len(skipped)} fetched records were skipped (no abstract)"
        return "PubMed returned no records for the ids it found"
