"""The specialists as graph nodes: small functions (state, runtime) -> partial update."""
