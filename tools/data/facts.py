"""What a passage states, fact by fact: sentences with the section they belong to, list items with the
sentence that introduces them, and table rows as key/value facts.

Real prose is structured. Structured abstracts label their sections ("BACKGROUND: …", "Methods: …"),
Markdown documents have headings (carried on the chunk, never glued into a sentence), manuals have lists
and tables. A question can only name what it asks about when the generator knows which part of the
document a sentence comes from, so the structure is read first and each fact keeps its section's role."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tools.data.chunking import Chunk
from tools.text import normalise_whitespace, split_sentences

# Structured-abstract labels and the role of their section (PubMed's NLM categories, plus common variants).
SECTION_ROLES = {
    "background": "background", "introduction": "background", "context": "background",
    "rationale": "background", "importance": "background",
    "objective": "objective", "objectives": "objective", "aim": "objective", "aims": "objective",
    "purpose": "objective", "goal": "objective", "goals": "objective", "hypothesis": "objective",
    "study objective": "objective", "aim of the study": "objective", "aims and objectives": "objective",
    "methods": "methods", "method": "methods", "materials and methods": "methods",
    "patients and methods": "methods", "subjects and methods": "methods", "design": "methods",
    "study design": "methods", "design, setting, and participants": "methods", "methodology": "methods",
    "setting": "setting", "settings": "setting", "location": "setting",
    "participants": "participants", "patients": "participants", "subjects": "participants",
    "population": "participants", "sample": "participants", "study population": "participants",
    "intervention": "intervention", "interventions": "intervention", "exposure": "intervention",
    "main outcome measures": "outcome", "main outcome measure": "outcome", "outcome measures": "outcome",
    "main outcomes and measures": "outcome", "measurements": "outcome", "main outcome": "outcome",
    "outcomes": "outcome", "measures": "outcome",
    "results": "results", "findings": "results", "result": "results", "main results": "results",
    "conclusions": "conclusion", "conclusion": "conclusion", "interpretation": "conclusion",
    "conclusions and relevance": "conclusion", "discussion": "conclusion", "implications": "conclusion",
    "summary": "conclusion",
}
_LABEL = re.compile(r"^(?P<label>[A-Z][A-Za-z ,&/]{2,45}?):\s+(?=\S)")
# an all-capitals label after a sentence end starts a section, whatever the sentence splitter thought
_INLINE_LABEL = re.compile(r"(?<=[.!?])\s+(?=[A-Z][A-Z ,&/]{2,45}:\s)")
_ROLE_WORDS = (("objective", "objective"), ("aim", "objective"), ("purpose", "objective"),
               ("background", "background"), ("context", "background"), ("method", "methods"),
               ("design", "methods"), ("setting", "setting"), ("patient", "participants"),
               ("participant", "participants"), ("intervention", "intervention"), ("outcome", "outcome"),
               ("measure", "outcome"), ("result", "results"), ("finding", "results"),
               ("conclusion", "conclusion"), ("interpretation", "conclusion"))
_LIST_ITEM = re.compile(r"^(?:[-*•+]|\d{1,3}[.)])\s+")
_TABLE_ROW = re.compile(r"^\|.*\|$")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{2,}")


@dataclass(frozen=True)
class Fact:
    """One thing a passage states. `text` is verbatim passage text; `role` is the section's role
    ("background", "objective", "methods", "participants", "results", "conclusion", … or "" when the
    passage is not a structured abstract); `heading` the Markdown heading above it; `kind` is
    "sentence", "list" (a lead sentence with its items) or "table" (one row as key/value pairs)."""

    text: str
    role: str
    heading: str
    kind: str = "sentence"
    index: int = 0
    key: str = ""  # table rows: the row's name; lists: the lead sentence
    values: tuple[tuple[str, str], ...] = ()  # table rows: (column, value)
    items: tuple[str, ...] = ()  # lists: the items


def section_role(label: str) -> str | None:
    """The role of a structured-abstract label ("RESULTS" -> "results", "CONTEXT AND OBJECTIVES" ->
    "objective"), None for other text before a colon. An all-capitals label the table lacks takes the role
    of a word it contains, or "other"."""
    name = normalise_whitespace(label).rstrip(" :")
    if (role := SECTION_ROLES.get(name.lower())) or not (name.isupper() and len(name) > 2):
        return role
    return next((role for word, role in _ROLE_WORDS if word in name.lower()), "other")


def labelled_sections(text: str) -> list[tuple[str, str]]:
    """(role, text) parts of a passage: a known label ("METHODS: …") starts a section that lasts until the
    next one; text before the first label has role ""."""
    sections: list[tuple[str, str]] = []
    role, current = "", []
    pieces = [s for part in _INLINE_LABEL.split(text) for s in split_sentences(part)]
    for sentence in pieces:
        match = _LABEL.match(sentence)
        if match and (found := section_role(match["label"])) is not None:
            if current:
                sections.append((role, " ".join(current)))
            role, current = found, [sentence[match.end():]]
        else:
            current.append(sentence)
    if current:
        sections.append((role, " ".join(current)))
    return sections


def _cells(line: str) -> list[str]:
    return [normalise_whitespace(cell) for cell in line.strip().strip("|").split("|")]


def table_facts(lines: list[str], heading: str, start: int) -> list[Fact]:
    """A Markdown table as one fact per row: the first column names the row, the header names the values."""
    rows = [line for line in lines if not _TABLE_RULE.match(line.strip())]
    if len(rows) < 2:
        return []
    header = _cells(rows[0])
    facts = []
    for offset, line in enumerate(rows[1:]):
        cells = _cells(line)
        if len(cells) != len(header) or not cells[0]:
            continue
        values = tuple((column, value) for column, value in zip(header[1:], cells[1:], strict=True)
                       if column and value)
        if values:
            text = f"{cells[0]}: " + "; ".join(f"{column} {value}" for column, value in values) + "."
            facts.append(Fact(text, "", heading, "table", start + offset, cells[0], values))
    return facts


def _list_facts(lines: list[str], heading: str, start: int) -> list[Fact]:
    """The sentences before a list, then the items with the sentence that introduces them
    ("The code has three parts:" + items); fewer than two items read as prose."""
    items = tuple(_LIST_ITEM.sub("", line).strip() for line in lines if _LIST_ITEM.match(line))
    before = split_sentences(" ".join(line for line in lines if not _LIST_ITEM.match(line)))
    if len(items) < 2:
        return _sentence_facts(" ".join(lines), heading, start)
    lead = before.pop() if before and before[-1].endswith(":") else ""
    facts = _sentence_facts(" ".join(before), heading, start)
    return [*facts, Fact(lead or heading, "", heading, "list", start + len(facts), lead, (), items)]


_MARKUP = re.compile(r"^(?:[-=*_#>|~`]{2,}\s*|[#>*]+\s+|[-•+]\s+)+")


def _sentence_facts(text: str, heading: str, start: int) -> list[Fact]:
    facts: list[Fact] = []
    for role, section in labelled_sections(text):
        sentences = [_MARKUP.sub("", s).strip() for s in split_sentences(section)]
        facts += [Fact(s, role, heading, "sentence", start + len(facts) + i)
                  for i, s in enumerate(s for s in sentences if s)]
    return facts


def _blocks(text: str) -> list[list[str]]:
    """Line groups: a table, a list (with its lead line), or prose."""
    groups: list[list[str]] = []
    for line in (line.rstrip() for line in text.splitlines()):
        if not line.strip():
            groups.append([])
            continue
        kind = "table" if _TABLE_ROW.match(line.strip()) else "list" if _LIST_ITEM.match(line.strip()) else "prose"
        previous = groups[-1] if groups and groups[-1] else None
        previous_kind = _group_kind(previous) if previous else None
        if previous is not None and (previous_kind == kind or (kind == "list" and previous_kind == "prose"
                                                               and previous[-1].rstrip().endswith(":"))):
            previous.append(line.strip())
        else:
            groups.append([line.strip()])
    return [g for g in groups if g]


def _group_kind(group: list[str]) -> str:
    if all(_TABLE_ROW.match(line) or _TABLE_RULE.match(line) for line in group):
        return "table"
    return "list" if any(_LIST_ITEM.match(line) for line in group) else "prose"


def passage_facts(text: str, heading: str = "") -> list[Fact]:
    """Every fact of one passage in reading order."""
    facts: list[Fact] = []
    for group in _blocks(text):
        kind = _group_kind(group)
        if kind == "table":
            facts += table_facts(group, heading, len(facts))
        elif kind == "list":
            facts += _list_facts(group, heading, len(facts))
        else:
            parts, heading = _headed_prose(group, heading)  # a plain-text heading heads the blocks after it too
            for line_heading, prose in parts:
                facts += _sentence_facts(prose, line_heading, len(facts))
    return [f for f in facts if len(f.text.split()) >= 3 or f.kind != "sentence"]


def _headed_prose(lines: list[str], heading: str) -> tuple[list[tuple[str, str]], str]:
    """Prose lines with the heading above them, and the heading in force after them: a short line without
    sentence punctuation is a title or a heading (of a plain-text document), never the start of the
    sentence after it."""
    parts: list[tuple[str, str]] = []
    current: list[str] = []
    for line in lines:
        if len(line.split()) <= 12 and not line.rstrip().endswith((".", "!", "?", ":", ";", ",")) \
                and not _LABEL.match(line):
            if current:
                parts.append((heading, " ".join(current)))
                current = []
            heading = line.strip().lstrip("#").strip()
        else:
            current.append(line)
    if current:
        parts.append((heading, " ".join(current)))
    return parts, heading


def _bucket(count: int) -> str:
    return "3+" if count >= 3 else str(count)


def fact_coverage(chunks: Sequence[Chunk], qa_rows: Sequence, document_rows: Sequence) -> dict:
    """How many training rows teach each fact of the drawn passages (a sentence, list or table row; the
    same sentence in two overlapping chunks is one fact). A QA row teaches the facts its metadata names
    or whose text its answer holds; a document row teaches every fact of its passage.
    Returns the number of facts and how many facts have 0, 1, 2 and 3+ QA rows, and rows of any kind."""
    facts: dict[str, str] = {}  # normalised text -> id
    by_chunk: dict[str, list[str]] = {}
    for chunk in chunks:
        for fact in passage_facts(chunk.text, chunk.heading):
            key = normalise_whitespace(fact.text).lower()
            facts.setdefault(key, f"{chunk.chunk_id}:{fact.index}")
            by_chunk.setdefault(chunk.chunk_id, []).append(key)
    qa: Counter[str] = Counter()
    for row in qa_rows:
        named = {key for key, fid in facts.items() if fid in set(row.metadata.get("facts", ()))}
        answer = normalise_whitespace(row.answer).lower()
        named |= {key for key in by_chunk.get(row.chunk_id, ()) if key in answer}
        qa.update(named)
    documents: Counter[str] = Counter()
    for row in document_rows:
        documents.update(set(by_chunk.get(row.chunk_id, ())))
    return {"facts": len(facts),
            "qa_rows_per_fact": dict(Counter(_bucket(qa[k]) for k in facts)),
            "rows_per_fact": dict(Counter(_bucket(qa[k] + documents[k]) for k in facts)),
            "facts_without_qa_rows": sum(1 for k in facts if not qa[k])}
