"""Generate `src/text/ftfy_tables.rs`: the data ftfy's `fix_text` works from.

Run from the crate root with the clip_tools package installed (`pip install -r
models/requirements.txt`, which has ftfy==6.3.1):

    python3 -m clip_tools.rust_tables.ftfy_tables > src/text/ftfy_tables.rs

Everything is read out of the installed ftfy and Python's codecs, never retyped:
- the character classes of ftfy's mojibake heuristic (`ftfy.badness.MOJIBAKE_CATEGORIES`)
  and of its UTF-8 detector (`ftfy.chardata.UTF8_CLUES`), as one bit mask per character,
  each class's membership taken from Python's own regex engine;
- the ten single-byte codecs ftfy tries (`ftfy.chardata.CHARMAP_ENCODINGS`, the `sloppy-*`
  ones from `ftfy.bad_codecs`), decode and encode tables, checked against `str.encode`;
- the bytes strict Windows-1252 leaves undefined;
- ftfy's upper-case HTML entities (`&NTILDE;`) beyond the HTML5 table;
- `WIDTH_MAP`, `LIGATURES` and `CONTROL_CHARS` translate tables.
"""

import html.entities
import io
import re
import sys

import ftfy
from ftfy import badness, chardata

from clip_tools.rust_tables import rust_str

assert ftfy.__version__ == "6.3.1", ftfy.__version__

# Every code point Python can put in a `str` that a Rust `char` can also hold.
ALL_CHARS = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)


def members(regex_class: str) -> list[int]:
    """The code points a Python regex character class matches."""
    return sorted({ord(c) for c in re.findall(regex_class, ALL_CHARS)})


# Bit names, in the order of the bits.
BADNESS_CATEGORIES = [
    "common", "c1", "bad", "law", "currency", "start_punctuation", "end_punctuation",
    "numeric", "kaomoji", "upper_accented", "lower_accented", "upper_common",
    "lower_common", "box",
]
UTF8_CLUES = [
    "utf8_first_of_2", "utf8_first_of_3", "utf8_first_of_4", "utf8_continuation",
    "utf8_continuation_strict",
]


def class_bits() -> tuple[list[str], dict[int, int]]:
    assert sorted(BADNESS_CATEGORIES) == sorted(badness.MOJIBAKE_CATEGORIES)
    assert sorted(UTF8_CLUES) == sorted(chardata.UTF8_CLUES)
    names = []
    masks: dict[int, int] = {}
    for bit, name in enumerate(BADNESS_CATEGORIES + UTF8_CLUES):
        source = badness.MOJIBAKE_CATEGORIES.get(name) or chardata.UTF8_CLUES[name]
        names.append(name)
        # The same `[...]` the library's verbose regexes build (spaces inside a class count).
        for cp in members("[" + source + "]"):
            masks[cp] = masks.get(cp, 0) | (1 << bit)
    # The Rust side special-cases ASCII: only the space is in a class (UTF-8 continuation).
    assert {cp: m for cp, m in masks.items() if cp < 0x80} == {
        0x20: 1 << names.index("utf8_continuation")}
    return names, masks


def charmaps() -> list[tuple[str, bool, list[int], list[tuple[int, int]]]]:
    out = []
    for encoding in chardata.CHARMAP_ENCODINGS:
        sloppy = encoding.startswith("sloppy")
        decode = [ord(bytes([b]).decode(encoding)) for b in range(256)]
        # What ftfy's `possible_encoding` accepts: ASCII except 0x1A, plus whatever bytes
        # 0x80-0xFF and 0x1A decode to.
        accepted = set(range(0x80)) - {0x1A}
        accepted |= {decode[b] for b in list(range(0x80, 0x100)) + [0x1A]}
        encode = {}
        for cp in sorted(accepted):
            encoded = chr(cp).encode(encoding)
            assert len(encoded) == 1
            encode[cp] = encoded[0]
            assert chardata.possible_encoding(chr(cp), encoding)
        for b in range(0x80):
            if b != 0x1A:
                assert decode[b] == b and encode[b] == b, (encoding, b)
        # The Rust side encodes ASCII (but 0x1A) as itself and looks the rest up.
        non_ascii = sorted((cp, b) for cp, b in encode.items() if cp >= 0x80 or cp == 0x1A)
        # possible_encoding must reject everything else (spot-check the neighbourhood).
        for cp in range(0x110000):
            if 0xD800 <= cp <= 0xDFFF or cp in accepted:
                continue
            if cp < 0x3000 or cp in (0xFFFD, 0xF8FF):
                assert not chardata.possible_encoding(chr(cp), encoding), (encoding, cp)
        out.append((encoding, sloppy, decode, non_ascii))
    return out


def windows_1252_undefined() -> list[int]:
    undefined = []
    for b in range(256):
        try:
            bytes([b]).decode("windows-1252")
        except UnicodeDecodeError:
            undefined.append(b)
    return undefined


def upper_entities() -> list[tuple[str, str]]:
    html5_semicolon = {"&" + k: v for k, v in html.entities.html5.items() if k.endswith(";")}
    extra = {k: v for k, v in chardata.HTML_ENTITIES.items() if k not in html5_semicolon}
    for k, v in html5_semicolon.items():
        assert chardata.HTML_ENTITIES[k] == v
    assert all(k.startswith("&") and k.endswith(";") for k in extra)
    return sorted((k[1:-1], v) for k, v in extra.items())


def translate_table(table: dict) -> list[tuple[int, str]]:
    rows = []
    for cp, value in sorted(table.items()):
        rows.append((cp, "" if value is None else value))
    return rows


def main() -> None:
    out = io.StringIO()
    w = out.write
    w("//! Data tables of ftfy %s's `fix_text`, read out of the installed ftfy and Python's\n"
      % ftfy.__version__)
    w("//! codecs: character classes of its mojibake heuristic, the single-byte codecs it\n")
    w("//! re-encodes with, its extra HTML entities and its translate tables.\n")
    w("//!\n")
    w("//! Generated by `python3 -m clip_tools.rust_tables.ftfy_tables > src/text/ftfy_tables.rs`\n")
    w("//! (Python %s, ftfy %s); do not edit.\n\n" % (sys.version.split()[0], ftfy.__version__))

    names, masks = class_bits()
    for bit, name in enumerate(names):
        w("/// Bit of ftfy's `%s` character class.\n" % name)
        w("pub(crate) const %s: u32 = 1 << %d;\n" % (name.upper(), bit))
    w("\n/// `(code point, class bits)` for every character in some class, sorted.\n")
    w("pub(crate) static CHAR_CLASSES: &[(u32, u32)] = &[\n")
    for cp in sorted(masks):
        w("    (0x%x, 0x%x),\n" % (cp, masks[cp]))
    w("];\n\n")

    w("/// A single-byte codec ftfy re-encodes mojibake with.\n")
    w("pub(crate) struct Charmap {\n")
    w("    /// The Python codec name.\n    pub name: &'static str,\n")
    w("    /// One of ftfy's `sloppy-*` codecs (byte 0x1A stands for U+FFFD).\n    pub sloppy: bool,\n")
    w("    /// The character each byte decodes to.\n    pub decode: [u32; 256],\n")
    w("    /// `(code point, byte)` for every encodable character except ASCII other than\n")
    w("    /// U+1A (which encodes as itself), sorted by code point.\n")
    w("    pub encode: &'static [(u32, u8)],\n")
    w("}\n\n")
    maps = charmaps()
    w("/// `ftfy.chardata.CHARMAP_ENCODINGS`, in the order ftfy tries them.\n")
    w("#[rustfmt::skip]\n")
    w("pub(crate) static CHARMAP_ENCODINGS: [Charmap; %d] = [\n" % len(maps))
    for name, sloppy, decode, encode in maps:
        w("    Charmap {\n        name: %s,\n        sloppy: %s,\n" % (rust_str(name), str(sloppy).lower()))
        w("        decode: [\n")
        for row in range(0, 256, 8):
            w("            " + " ".join("0x%x," % cp for cp in decode[row:row + 8]) + "\n")
        w("        ],\n        encode: &[\n")
        for cp, b in encode:
            w("            (0x%x, 0x%02x),\n" % (cp, b))
        w("        ],\n    },\n")
    w("];\n\n")

    undefined = windows_1252_undefined()
    w("/// The bytes Python's strict `windows-1252` codec cannot decode.\n")
    w("pub(crate) static WINDOWS_1252_UNDEFINED: &[u8] = &[%s];\n\n"
      % ", ".join("0x%02x" % b for b in undefined))

    extra = upper_entities()
    w("/// ftfy's upper-cased entity names (`&NTILDE;`), beyond the HTML5 table: `(name without\n")
    w("/// `&` and `;`, replacement)`, sorted by name.\n")
    w("pub(crate) static UPPER_ENTITIES: &[(&str, &str)] = &[\n")
    for name, value in extra:
        w("    (%s, %s),\n" % (rust_str(name), rust_str(value)))
    w("];\n\n")

    for const, table, doc in [
        ("WIDTH_MAP", chardata.WIDTH_MAP, "`ftfy.chardata.WIDTH_MAP` (fullwidth/halfwidth forms)"),
        ("LIGATURES", chardata.LIGATURES, "`ftfy.chardata.LIGATURES` (Latin ligatures)"),
        ("CONTROL_CHARS", chardata.CONTROL_CHARS,
         "`ftfy.chardata.CONTROL_CHARS` (characters removed; all map to \"\")"),
    ]:
        rows = translate_table(table)
        w("/// %s: `(code point, replacement)`, sorted.\n" % doc)
        w("pub(crate) static %s: &[(u32, &str)] = &[\n" % const)
        for cp, value in rows:
            w("    (0x%x, %s),\n" % (cp, rust_str(value)))
        w("];\n\n")
    # One newline at the end, as rustfmt leaves it (`cargo fmt` must not change this file).
    sys.stdout.write(out.getvalue().rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
