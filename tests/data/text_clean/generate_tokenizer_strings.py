#!/usr/bin/env python3
"""Golden cleaned text: open_clip's `_clean_lower` on the tokenizer test strings and more.

    python3 tests/data/text_clean/generate_tokenizer_strings.py   # writes tokenizer_strings.jsonl

(Complements generate_clean_cases.py / clean_cases.jsonl in this folder: these are the
strings of tests/data/tokenizer/cases.jsonl, so a tokenizer mismatch there can be traced to
cleaning or to BPE, plus the extras below.)

Each line is {"text": "...", "clean": "..."} with clean = open_clip.tokenizer._clean_lower(text):

    ftfy.fix_text(text)                  # ftfy 6 defaults (see below)
    html.unescape(html.unescape(...))    # twice
    .strip(); " ".join(s.split()); .strip(); .lower()   # Python str.split() whitespace, str.lower()

ftfy.fix_text defaults (TextFixerConfig): unescape_html="auto" (only when the text has no '<'),
remove_terminal_escapes, fix_encoding (mojibake), restore_byte_a0, replace_lossy_sequences,
decode_inconsistent_utf8, fix_c1_controls, fix_latin_ligatures, fix_character_width,
uncurl_quotes, fix_line_breaks, fix_surrogates, remove_control_chars, normalization="NFC";
the text is processed line by line.

The strings are those of tests/data/tokenizer/generate.py `cases()` plus cleaning-specific
extras below (deterministic).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_GENERATE = os.path.join(HERE, "..", "tokenizer", "generate.py")


def _tokenizer_cases() -> list[str]:
    spec = importlib.util.spec_from_file_location("tokenizer_generate", TOKENIZER_GENERATE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.cases(), mod.dump_line


EXTRA = [
    # whitespace classes: Python str.split() splits on str.isspace() chars, which include
    # \x1c-\x1f and \x85 (not Unicode White_Space) but not U+200B / U+180E / U+FEFF.
    "a\x1cb\x1dc\x1ed\x1ff", "a\x85b", "a\u2028b\u2029c", "a\u200bb", "a\u180eb", "a\ufeffb", "a\u2060b",
    "a\u00a0b\u1680c\u2000d\u2001e\u2002f\u2003g\u2004h\u2005i\u2006j\u2007k\u2008l\u2009m\u200an\u202fo\u205fp\u3000q",
    "a\tb\nc\x0bd\x0ce\rf", "\r\n\r\n", "  \u3000  ", "x \u200b y",
    # lower(): special casing
    "ΣΑΣ ΣΑΣ.", "ΌΣΟΣ", "ΑΣ", "Σ.", "AΣb", "ΑΣ'Σ", "İ", "İi", "ẞ", "ǅ", "Ⅻ", "ᾼ", "Ꭰ", "ΐ", "ŉ", "ǰ",
    "K", "Ω", "Å", "ﬃ", "ＡＢＣ", "𝐀", "Ⓐ", "🄰",
    # ftfy: mojibake and friends
    "Ã¡", "Ã©", "Ã¨", "Ã¶", "Ã¼", "ÃŸ", "Ã±", "Ã§", "Ã¦", "Ã¸", "Ã¥", "â€œ", "â€\x9d", "â€™", "â€˜", "â€“",
    "â€”", "â€¦", "â‚¬", "Â©", "Â®", "Â°", "Â±", "Â½", "Ã\xa0", "ÃƒÂ©", "Ãƒâ€š", "ðŸ˜€", "ðŸ¤–",
    "Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "ã“ã‚“ã«ã¡ã¯", "Ã¢â‚¬Å“Hello,Ã¢â‚¬Â\x9d", "caf\xe9", "\xe2\x80\x99",
    "#Ã©", "Ã© Ã©", "Ã©Ã©Ã©", "Ã", "Ã ", "Ã\x20", "sÃ\xa0", "l\xc3\xa9", "Ãºnico",
    # ftfy: C1 controls, terminal escapes, control chars, line breaks
    "\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f",
    "\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f",
    "\x1b[0m", "\x1b[38;5;196mcolour\x1b[39m", "a\x1b[Kb", "\x1b", "\x1b[", "x\x1b[1mbold", "\x00\x01\x02\x03",
    "\x7f\x08\x0e\x0f", "\u200e\u200f\u202a\u202b\u202c\u202d\u202e", "\u2066\u2067\u2068\u2069",
    "\ufff9\ufffa\ufffb", "\U000e0001\U000e0020\U000e007f", "\ufeffbom", "a\u00adb", "\u034f",
    "line1\r\nline2", "line1\rline2", "line1\u2028line2", "line1\u0085line2",
    # ftfy: width, ligatures, quotes
    "ｈｅｌｌｏ", "ＨＥＬＬＯ", "０１２３４５６７８９", "！＂＃＄％＆＇（）＊＋，－．／", "ｶﾞｷﾞｸﾞ", "ﾊﾟﾋﾟ", "ｰ",
    "ﬀ", "ﬁ", "ﬂ", "ﬃ", "ﬄ", "ﬅ", "ﬆ", "Ǆ", "Ĳ", "ŀ", "ﬓ",
    "‘’‚‛“”„‟", "′″‴", "‹›«»", "＇＂", "`´",
    # html: named/numeric/hex, no semicolon, double escape, invalid code points
    "&AMP;", "&Amp;", "&amp;amp;amp;amp;", "&lt;&lt;", "&LT;", "&gt", "&quot", "&apos;", "&apos",
    "&nbsp", "&NotANamedEntity;", "&#", "&#;", "&#x;", "&#65", "&#x41", "&#65;5", "&#0065;",
    "&#x0041;", "&#1114111;", "&#1114112;", "&#55296;", "&#128;", "&#150;", "&#x80;", "&#x9d;",
    "&#13;", "&#10;", "&#9;", "&#32;", "&#160;", "&#8232;", "&#12288;", "x&#10;&#10;y", "&#x1F1FA;&#x1F1F8;",
    "&amp;#65;", "&amp;#x41;", "&amp;nbsp;", "&amp;amp;nbsp;", "&lt;b&gt;", "&amp;lt;b&amp;gt;",
    "<p>&amp;amp;</p>", "<&amp;>", "a<b", "a>b &amp; c", "a &lt; b", "&eacute<", "&copy<",
    "&ampamp;", "&amp;copy", "&copy;&copy", "&not;", "&notin", "&cent&pound&yen",
    # everything at once
    "  \x1b[31mâ€œCafÃ©â€\x9d\x1b[0m &amp;amp; ﬁsh\u3000ＡＢＣ\t\r\n it’s   DONE!  ",
]


def main() -> int:
    from open_clip.tokenizer import _clean_lower

    texts, dump_line = _tokenizer_cases()
    seen = set(texts)
    for t in EXTRA:
        if t not in seen:
            seen.add(t)
            texts.append(t)
    rows = [{"text": t, "clean": _clean_lower(t)} for t in texts]
    path = os.path.join(HERE, "tokenizer_strings.jsonl")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(dump_line(r) + "\n")
    with open(path, encoding="utf-8") as f:
        back = [json.loads(line) for line in f.read().split("\n") if line]
    assert back == rows
    changed = sum(1 for r in rows if r["clean"] != " ".join(r["text"].split()).lower())
    print(f"wrote {path}: {len(rows)} cases ({changed} where cleaning does more than split/join/lower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
