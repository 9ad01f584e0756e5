"""Bad files never sink a job: a deflate-bomb PDF, a 1 GB (sparse) file, binary garbage under document
extensions and links out of the docs folder are each skipped with their reason; the good files are read."""

from __future__ import annotations

import os
import random
import shutil
import zlib
from pathlib import Path

from langgraph.runtime import Runtime

from agent.settings import Settings
from graphs.context import JobContext
from graphs.nodes.researcher import gather_documents
from graphs.spec import JobSpec
from tools.sources.documents import SourceError
from tools.sources.text_extraction import extract_file

DEMO = Path(__file__).resolve().parents[2] / "tools" / "eval_sets" / "demo_corpus"
GOOD = ("shor-code.md", "surface-code.md")


def deflate_bomb_pdf(path: Path, decompressed_mb: int = 100) -> Path:
    """A valid one-page PDF whose content stream (real text operators) inflates ~300x: ~300 KB on disk,
    100 MB once decompressed, past pypdf's 75 MB safety limit."""
    unit = b"BT /F1 12 Tf 72 712 Td (surface code) Tj ET\n"
    stream = zlib.compress(unit * (decompressed_mb * 2**20 // len(unit)), 9)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
                b"/Contents 4 0 R >>"),
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    pdf, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(pdf))
    return path


def bad_docs_folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in GOOD:
        shutil.copy(DEMO / name, docs / name)
    deflate_bomb_pdf(docs / "bomb.pdf")
    with (docs / "huge.txt").open("wb") as handle:  # 1 GB, sparse: no disk space, no read
        handle.truncate(2**30)
    noise = random.Random(0)
    (docs / "garbage.txt").write_bytes(bytes(noise.randrange(1, 256) for _ in range(20000)))  # no NUL byte
    (docs / "garbage.md").write_bytes(os.urandom(4096))
    (docs / "garbage.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(4096))
    secret = tmp_path / "outside" / "secret.md"
    secret.parent.mkdir()
    secret.write_text("# Secret\n\nThe server's private notes on quantum error correction.\n")
    (docs / "leak.md").symlink_to(secret)
    (docs / "outside-folder").symlink_to(secret.parent, target_is_directory=True)
    return docs


def test_each_bad_file_is_skipped_with_its_reason_and_the_good_ones_are_read(tmp_path: Path) -> None:
    docs = bad_docs_folder(tmp_path)
    spec = JobSpec(subject="quantum error correction", docs_path=str(docs))
    state = {"job_id": "job-1", "request": "fine-tune on quantum error correction", "spec": spec}
    update = gather_documents(state, Runtime(context=JobContext(Settings(home=tmp_path / "home", network=False))))

    assert sorted(Path(d["uri"]).name for d in update["documents"]) == sorted(GOOD)
    reasons = {Path(s["what"].split(":", 1)[-1]).name: s["reason"] for s in update["skipped"]}
    assert "decompression bomb" in reasons["bomb.pdf"]
    assert "1024 MB, more than the 64 MB limit" in reasons["huge.txt"]
    assert "binary content (control characters)" in reasons["garbage.txt"]
    assert "binary content (NUL bytes)" in reasons["garbage.md"]
    assert "corrupt PDF" in reasons["garbage.pdf"] or "unreadable PDF" in reasons["garbage.pdf"]
    assert "outside the docs folder" in reasons["leak.md"]
    assert len(update["skipped"]) == 6 and not any("Secret" in d["title"] for d in update["documents"])
    stored = "".join(p.read_text() for p in (tmp_path / "home" / "jobs" / "job-1" / "documents").iterdir())
    assert "private notes" not in stored


def test_reads_are_capped_even_for_a_file_given_directly(tmp_path: Path) -> None:
    big = tmp_path / "big.md"
    with big.open("wb") as handle:
        handle.truncate(2**30)
    try:
        extract_file(big)
    except SourceError as error:
        assert "more than the 64 MB limit" in error.reason
    else:
        raise AssertionError("a 1 GB file was read")
