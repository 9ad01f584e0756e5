"""Parsing throughput of the sources, on the recorded fixtures, printed as JSON lines.

- arXiv Atom feeds -> `arxiv_source.parse_feed` (documents/s);
- PubMed efetch XML -> `pubmed_source.parse_articles` (documents/s), both as one large
  article set (a real efetch of 250 records) and as the small fixture files one by one
  (Bio.Entrez re-reads the DTD for every file, which dominates small answers);
- PDF text extraction with pypdf -> `common.pdf_text` (pages/s), on a PDF made here with
  matplotlib's PdfPages (one page of text per figure).

Run: `.venv/bin/python bench/bench_parsing.py [--seconds 2]`. Nothing touches the network.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from tools.sources.arxiv_source import parse_feed
from tools.sources.common import pdf_text
from tools.sources.pubmed_source import parse_articles

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
ARXIV_FEEDS = (
    "arxivpy_search_testing_start0_max10.xml",
    "arxivpy_search_testing_start10_max10.xml",
    "arxivpy_id_1605.08386_single.xml",
    "arxivpy_id_astro-ph_0601001_oldstyle.xml",
)
PUBMED_SETS = (
    "biopython_pubmed2.xml",
    "biopython_pubmed4.xml",
    "biopython_pubmed5.xml",
    "biocommons_efetch_pubmed_22351513.xml",
)
PDF_PAGES = 20


def measure(name: str, unit: str, work: Callable[[], int], seconds: float) -> dict[str, object]:
    """Run `work` (returns items done) repeatedly for about `seconds`; items per second."""
    work()  # warm-up: imports, DTD loading
    items, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        items += work()
    return {
        "bench": name,
        "unit": unit,
        "value": round(items / elapsed, 1),
        "items": items,
        "seconds": round(elapsed, 3),
    }


def arxiv_work() -> Callable[[], int]:
    """Parse every arXiv fixture feed once; count entries."""
    feeds = [(FIXTURES / "arxiv" / name).read_bytes() for name in ARXIV_FEEDS]
    return lambda: sum(len(parse_feed(feed)[1]) for feed in feeds)


def pubmed_work() -> Callable[[], int]:
    """Parse every PubMed fixture file once (1-2 articles each); count articles."""
    sets = [(FIXTURES / "ncbi" / name).read_bytes() for name in PUBMED_SETS]
    return lambda: sum(len(parse_articles(body)) for body in sets)


def pubmed_batch(copies: int = 50) -> bytes:
    """One PubmedArticleSet holding every fixture article `copies` times, as a large efetch."""
    articles = []
    for name in PUBMED_SETS:
        text = (FIXTURES / "ncbi" / name).read_text(encoding="utf-8")
        articles += re.findall(r"<PubmedArticle>.*?</PubmedArticle>", text, flags=re.DOTALL)
    head = (FIXTURES / "ncbi" / PUBMED_SETS[0]).read_text(encoding="utf-8")
    prologue = head[: head.index("<PubmedArticleSet>") + len("<PubmedArticleSet>")]
    return (prologue + "\n".join(articles * copies) + "</PubmedArticleSet>\n").encode()


def pubmed_batch_work() -> Callable[[], int]:
    """Parse the large article set once; count articles."""
    body = pubmed_batch()
    return lambda: len(parse_articles(body))


def make_pdf(pages: int) -> bytes:
    """A text PDF of `pages` pages, drawn with matplotlib (Agg, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    line = "Surface codes protect logical qubits; matching decoders pair syndrome defects."
    buffer = io.BytesIO()
    with PdfPages(buffer) as pdf:
        for number in range(pages):
            figure = plt.figure(figsize=(8.27, 11.69))
            for row in range(40):
                figure.text(0.05, 0.95 - row * 0.023, f"{number}.{row} {line}", fontsize=8)
            pdf.savefig(figure)
            plt.close(figure)
    return buffer.getvalue()


def pdf_work() -> Callable[[], int]:
    """Extract the text of the generated PDF once; count pages."""
    content = make_pdf(PDF_PAGES)
    return lambda: pdf_text(content, PDF_PAGES, "bench.pdf")[1]


def main() -> None:
    """Print one JSON line per benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per benchmark")
    args = parser.parse_args()
    runs = [
        ("arxiv_atom_parse", "documents/s", arxiv_work()),
        ("pubmed_xml_parse_batch", "documents/s", pubmed_batch_work()),
        ("pubmed_xml_parse_small_files", "documents/s", pubmed_work()),
        ("pdf_text_extract", "pages/s", pdf_work()),
    ]
    for name, unit, work in runs:
        print(json.dumps(measure(name, unit, work, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
