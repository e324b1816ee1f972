"""One page of a directory's children: the filter and the slice (pure).

Paging is the web server's (issue #12: a 100,000-child directory stays fast): the browser
gets :data:`PAGE` rows at a time, and the filter runs here over the names a LIST returned.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Children shown per page of a directory listing.
PAGE = 100


def label(did: int, names: list[str] | None) -> str:
    """How the browser names a directory: its first ``name`` value, else its number
    (tools §6: "Directories without a name are shown by numeric ID")."""
    return names[0] if names else f"#{did}"


@dataclass
class Listing:
    """One page of a directory's children."""

    total: int                     #: children of the directory
    matched: int                   #: children passing the filter
    offset: int
    rows: list[tuple[int, str, list[str]]]   #: (id, label, all names)
    filter: str

    @property
    def next(self) -> int | None:
        return self.offset + PAGE if self.offset + PAGE < self.matched else None

    @property
    def prev(self) -> int | None:
        return max(0, self.offset - PAGE) if self.offset > 0 else None


def page_of(children: list[tuple[int, list[str]]], offset: int, text: str) -> Listing:
    """Filter (case-insensitive substring of any name, or the exact id) and one page."""
    text = text.strip()
    if text:
        needle = text.casefold()
        ident = int(text) if text.isascii() and text.isdigit() else None
        picked = [(cid, names) for cid, names in children
                  if cid == ident or any(needle in n.casefold() for n in names)]
    else:
        picked = children
    offset = clamp(offset, len(picked))
    rows = [(cid, label(cid, names), names) for cid, names in
            picked[offset:offset + PAGE]]
    return Listing(len(children), len(picked), offset, rows, text)


def clamp(offset: int, count: int) -> int:
    """*offset* moved onto a page that exists (the last one when past the end)."""
    return min(offset, max(0, count - 1) // PAGE * PAGE)
