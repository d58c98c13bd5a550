"""Text facts shared by media and search: the CJK script ranges and accent folding."""

from __future__ import annotations

import unicodedata

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"  # kana, CJK ideographs, hangul


def fold_accents(text: str) -> str:
    """Latin letters without their accents ("Bäckerei" -> "Backerei"): the bundled PP-OCR model reads
    umlauts as plain letters, and users type either."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
