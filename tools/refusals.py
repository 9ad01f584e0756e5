"""The one error for a file in the home that is refused because loading it could run code."""

from __future__ import annotations


class RefusedToLoad(ValueError):
    """A checkpoint (a trainer's state.pt, a graph checkpoint row) that asks for more than plain data was
    not loaded; the message names what it asked for and how to go on."""
