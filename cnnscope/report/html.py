"""A tiny static-HTML writer: no server, no JavaScript, no template engine."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}th{background:#f4f4f4}
figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top}
figcaption{font-size:.85rem;color:#555}img{max-width:100%}.muted{color:#777;font-size:.85rem}
"""


def table(header: Sequence[str], rows: Iterable[Sequence], max_rows: int | None = None) -> str:
    rows = list(rows)
    shown = rows if max_rows is None else rows[:max_rows]
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in shown)
    more = f'<p class="muted">… {len(rows) - len(shown)} more rows</p>' if len(shown) < len(rows) else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def figure(src: str, caption: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return (f'<figure><img src="{escape(src)}" alt="{escape(caption)}"{w}>'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def section(title: str, body: str, anchor: str | None = None) -> str:
    aid = f' id="{escape(anchor)}"' if anchor else ""
    return f"<section{aid}><h2>{escape(title)}</h2>{body}</section>"


def page(title: str, sections: Iterable[str], intro: str = "") -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{intro}{''.join(sections)}"
            "</body></html>\n")
