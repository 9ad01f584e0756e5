"""Document sources behind one interface: search(query, limit) -> references; fetch(reference) -> document."""
