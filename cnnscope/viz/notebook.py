"""How results show themselves in a notebook: a contact sheet of pictures (PNG bytes) and a record as HTML
tables. Pillow only (no matplotlib figure per display), deterministic bytes."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from ..images import tensor_to_uint8

GAP = 4  # px between pictures
CAPTION = 14  # px per caption line
MAX_COLUMNS = 8


def contact_sheet(pictures: Sequence, captions: Sequence[str], columns: int | None = None) -> Image.Image:
    """Pictures ([3,H,W] tensors in [0,1]) side by side, `columns` (default up to 8) a row, each with its
    caption below.

    Every cell is as large as the largest picture; the sheet is ``columns * (W + GAP) - GAP`` wide and
    ``rows * (H + lines * CAPTION + GAP) - GAP`` high, where ``lines`` is the most caption lines of any picture.
    """
    tiles = [Image.fromarray(tensor_to_uint8(p)) for p in pictures]
    if not tiles:
        return Image.new("RGB", (1, 1), "white")
    w = max(t.width for t in tiles)
    h = max(t.height for t in tiles)
    lines = max((len(c.split("\n")) if c else 0) for c in captions) if captions else 0
    columns = min(len(tiles), columns or MAX_COLUMNS)
    rows = math.ceil(len(tiles) / columns)
    cell_h = h + lines * CAPTION
    sheet = Image.new("RGB", (columns * (w + GAP) - GAP, rows * (cell_h + GAP) - GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for i, tile in enumerate(tiles):
        x, y = (i % columns) * (w + GAP), (i // columns) * (cell_h + GAP)
        sheet.paste(tile, (x, y))
        for k, line in enumerate((captions[i] if i < len(captions) else "").split("\n")[:lines]):
            draw.text((x + 2, y + h + k * CAPTION + 1), line, fill="black")
    return sheet


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _number(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


def _cell(value) -> str:
    """A value as HTML: numbers rounded, lists of numbers inline, dicts and lists of dicts as tables."""
    if isinstance(value, dict):
        return record_table(value)
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            keys = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
            body = "".join("<tr>" + "".join(f"<td>{_cell(v.get(k, ''))}</td>" for k in keys) + "</tr>"
                           for v in value)
            return f"<table><tr>{head}</tr>{body}</table>"
        if value and all(isinstance(v, (list, tuple)) for v in value):
            return "<table>" + "".join("<tr>" + "".join(f"<td>{_cell(x)}</td>" for x in row) + "</tr>"
                                       for row in value) + "</table>"
        return ", ".join(_cell(v) for v in value)
    return _number(value)


def record_table(record: dict) -> str:
    """A record (a result's JSON) as a two-column HTML table, nested values as nested tables."""
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>"
                   for k, v in record.items())
    return f"<table>{rows}</table>"


def result_html(title: str, record: dict, png: bytes | None) -> str:
    """A result for a notebook: its title, its pictures (when it has some) and its record as tables."""
    picture = (f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}"/>' if png else "")
    return f"<div><b>{html.escape(title)}</b><br/>{picture}{record_table(record)}</div>"
