#!/usr/bin/env python3
"""Generate `clean_cases.jsonl`: inputs and open_clip's cleaning of them, before BPE.

Run from the crate root (needs `pip install open_clip_torch ftfy==6.3.1`):

    python3 tests/data/text_clean/generate_clean_cases.py

Each line is `{"text": ..., "clean": ...}` where `clean` is what open_clip's
`SimpleTokenizer` (default `clean='lower'`) feeds to BPE:
`whitespace_clean(basic_clean(text)).lower()`, i.e. ftfy's `fix_text`, `html.unescape`
twice, whitespace collapsed, Python's `str.lower`. The expectations come from open_clip
itself, never from the Rust code under test. Cases cover mojibake in every codec ftfy
knows (and legitimate text it must leave alone), HTML entities, ftfy's other fixes,
whitespace and case rules, and seeded random strings over a mixed alphabet.
"""

import html
import json
import random
import sys
import unicodedata
from pathlib import Path

import ftfy
import open_clip
from open_clip.tokenizer import SimpleTokenizer, _clean_lower

OUT = Path(__file__).with_name("clean_cases.jsonl")

# The default SimpleTokenizer cleans with `_clean_lower`; make sure that is still so.
assert SimpleTokenizer().clean_fn is _clean_lower
assert ftfy.__version__ == "6.3.1", ftfy.__version__

CASES: list[str] = []


def add(text: str) -> None:
    CASES.append(text)


# --- Legitimate text in many scripts (also the source of mojibake below) ------------------
SAMPLES = [
    "a photo of a dog.",
    "A Photo Of A CAT",
    "café", "Café au lait", "naïve résumé", "crème brûlée", "voilà le travail",
    "à la mode", "Ça va? Très bien!", "où est l'hôtel", "Noël", "déjà vu",
    "schön", "Grüße aus München", "Straße", "Ärger über Öl", "GROSSE STRASSE",
    "niño", "¿Qué tal?", "¡Hola, señor!", "mañana", "corazón",
    "São Paulo", "às vezes", "àquele homem", "ação", "informação",
    "fàcil", "l'àvia", "Łódź", "zażółć gęślą jaźń", "Příliš žluťoučký kůň",
    "Dobrý deň", "Őrült ütő", "çok güzel", "İstanbul", "ıslak şemsiye", "Ğ ğ Ş ş",
    "Ελληνικά", "ΟΔΟΣ", "οδός", "Σίσυφος", "ΣΑΣ ΣΑΣ", "Ἀθῆναι",
    "Привет, мир", "Ёжик в тумане", "Україна", "Беларусь",
    "שלום עולם", "مرحبا بالعالم", "السلام عليكم", "हिन्दी", "ಕನ್ನಡ", "தமிழ்",
    "日本語のテキスト", "中文字符", "한국어 텍스트", "ｶﾀｶﾅ", "ＬＯＵＤ　ＮＯＩＳＥＳ",
    "“curly quotes”", "‘single’", "it’s", "„German quotes“", "«guillemets»",
    "em—dash", "en–dash", "ellipsis…", "bullet • point", "€100", "£5", "¥500", "™ ® ©",
    "½ ¼ ¾", "x² + y³", "±5°C", "µm", "×÷", "§ 12 ¶ 3", "→ ← ↑ ↓", "✔ done", "✓", "★☆",
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🏴󠁧󠁢󠁷󠁬󠁳󠁿", "❤️", "🤖 robot",
    "(╯°□°)╯︵ ┻━┻", "¯\\_(ツ)_/¯", "ಠ_ಠ", "(͡° ͜ʖ ͡°)", "ʕ•ᴥ•ʔ",
    "ﬁsh ﬂour ﬀ ﬃ ﬄ ﬆ", "Ĳssel", "ǅemal", "e\u0301", "A\u030a", "\u1100\u1161\u11a8",
    "Ω ≈ 3.14", "∑ ∏ √ ∞ ≠ ≤ ≥", "❄ snow", "₿", "№ 5", "Ⅻ", "⅓",
    "\u00a0nbsp\u00a0", "zero\u200bwidth", "soft\u00adhyphen", "rtl\u200fmark",
    "a red cup", "the drawer handle", "blue ball on the table",
]
for s in SAMPLES:
    add(s)

# --- Mojibake: UTF-8 read in each single-byte codec ftfy knows ---------------------------
CODECS = [
    "latin-1", "sloppy-windows-1252", "sloppy-windows-1251", "sloppy-windows-1250",
    "sloppy-windows-1253", "sloppy-windows-1254", "sloppy-windows-1257", "iso-8859-2",
    "macroman", "cp437", "windows-1252", "cp850",
]


def mojibake(s: str, codec: str, errors: str = "strict") -> str | None:
    try:
        return s.encode("utf-8").decode(codec, errors=errors)
    except (UnicodeDecodeError, LookupError):
        return None


for s in SAMPLES:
    for codec in CODECS:
        bad = mojibake(s, codec)
        if bad is not None and bad != s:
            add(bad)
    # windows-1252 that replaced its undefined bytes with U+FFFD (lossy)
    lossy = mojibake(s, "windows-1252", errors="replace")
    if lossy and lossy != s:
        add(lossy)
        add(lossy.replace("\ufffd", "?"))
    # 0xA0 turned into a space
    bad = mojibake(s, "sloppy-windows-1252")
    if bad and "\xa0" in bad:
        add(bad.replace("\xa0", " "))
    # twice-encoded mojibake
    twice = mojibake(s, "sloppy-windows-1252")
    if twice:
        twice = mojibake(twice, "sloppy-windows-1252")
        if twice:
            add(twice)
    # embedded in otherwise-correct text (inconsistent UTF-8)
    bad = mojibake(s, "sloppy-windows-1252")
    if bad and bad != s:
        add("Le café est chaud — " + bad + " — naïve")
        add(bad + "\n" + s + "\n" + bad.upper())

# Classic cases from ftfy's docs and tests.
for s in [
    "cafÃ©", "â€œquotedâ€\x9d", "â€œ like this â€�", "âœ” No problems", "sÃ³", "voilÃ le travail",
    "Ã la mode", "fÃ cil", "Ã s vezes", "Ã quele", "Ã quela casa", "Ã quilo", "schÃ¶n",
    "&macr;\\_(ã\x83\x84)_/&macr;", "Broken text&hellip; it&#x2019;s ﬂubberiﬁc!",
    "ÃƒÂ©", "Ã¢â‚¬Å“", "Ã¢â‚¬â„¢", "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
    "Ã°Å¸Ëœâ‚¬", "ðŸ˜€", "ðŸ‘", "ï»¿BOM", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "Î•Î»Î»Î·Î½Î¹ÎºÎ¬",
    "Ã¼ber", "Ãœber", "MÃ¼nchen", "â€” em dash", "â€“ en dash", "â€¦", "â€¢", "â‚¬", "Â£",
    "Â©", "Â®", "Â°C", "Â½", "Â ", "Â  ", "a Â b", "x.Â y", "Ãƒ", "Ã\xa0", "Ã¡", "Ã ",
    "×²", "Ø¨Ø§Ù„Ø¹Ø§Ù„Ù…", "à²", "√±", "≈°", "‚Äô", "‚Äú", "‚àö", "‚ó°", "вЂ", "вЂњ", "ГўВЂВњA",
    "βЂ™", "Β°Β", "ā€", "РЎРѓ", "Р\x98Р", "Ã\x81", "\x80\x81\x82", "\x93quoted\x94",
    "It\x92s", "caf\xe9", "\x85", "price: 100\x80", "a\x9d", "ĉ\x85",
    "â€œ", "â€\x9d", "â€™", "â€˜", "â„¢", "Ã©tÃ©", "Ã‰tÃ‰", "ÐÐ°",
    "chÃ\xa0teau", "DÃ©jÃ\xa0 vu", "Ã¨ Ã¨", "Ã± Ã±", "Ã\u00a0la carte",
    "Ã\xa0 la", "Ã\xa0 quel point", "Ã\xa0s", "Ã\xa0quele",
    "\xed\xa0\xbd\xed\xb8\x80", "Ã­Â Â½Ã­Â¸Â€", "í\xa0½í¸\x80",
    "ÃÂ", "Ã€", "Ã€Â", "Ã\x80", "Ã\x80\n", "abc ÃƒÂ©À\n", "Â\n", "Ã©\nÃ©",
    "ùúûü", "ò ó ô õ ö", "Ø Ù Ú", "Œuvre", "œil", "Œ1", "œ.", "Ï€", "Ã—", "Ãº",
    "Ð\x9fÑ\x80Ð¸Ð²ÐµÑ\x82", "â\x80\x9c", "â\x80\x94", "Ã\x83Â©",
]:
    add(s)

# --- HTML entities -------------------------------------------------------------------------
ENTITY_TEXTS = [
    "&amp;", "&amp;amp;", "&amp;amp;amp;", "&amp;amp;amp;amp;", "&lt;b&gt;", "&quot;hi&quot;",
    "&copy", "&copy;", "&copy 2024", "&COPY", "&COPY;", "&notit;", "&notin;", "&not",
    "&noti", "&ampx", "&ampx;", "&amplifier;", "&AMP", "&AMP;", "&Amp;", "&nbsp;x",
    "&nbsp", "&nbspx", "&eacute;", "&Eacute;", "&EACUTE;", "P&EACUTE;REZ", "&ntilde; &Ntilde; &NTILDE; &nTILDE;",
    "BUNDESSTRA&SZLIG;E", "&szlig;", "&SZLIG", "&Jscr;ohn &HilbertSpace;ancock", "&checkmark;",
    "&CounterClockwiseContourIntegral;", "&CounterClockwiseContourIntegral",
    "&ClockwiseContourIntegral;x", "&DoubleLongLeftRightArrow;", "&NotNestedGreaterGreater;",
    "&hellip;", "&mdash;", "&ndash;", "&lsquo;x&rsquo;", "&ldquo;x&rdquo;", "&apos;",
    "&#65;", "&#065;", "&#x41;", "&#X41;", "&#x41", "&#65", "&#65a", "&#65a;", "&#x4g;",
    "&#;", "&#x;", "&#X;", "&#", "&", "&;", "& amp;", "&&amp;", "&amp&amp;", "&#38;amp;",
    "&#38;#38;", "&#x26;amp;", "&#0;", "&#1;", "&#8;", "&#9;", "&#10;", "&#11;", "&#12;",
    "&#13;", "&#31;", "&#32;", "&#127;", "&#128;", "&#129;", "&#130;", "&#141;", "&#150;",
    "&#159;", "&#160;", "&#173;", "&#x2019;", "&#8217;", "&#8220;quoted&#8221;",
    "&#xD800;", "&#xDFFF;", "&#55296;", "&#xFFFE;", "&#xFFFF;", "&#x1FFFE;", "&#x10FFFF;",
    "&#x110000;", "&#1114112;", "&#99999999999999999999;", "&#x00000041;", "&#xFDD0;",
    "&#xFDEF;", "&#xFDF0;", "&#x1F600;", "&#128512;", "&#59;", "&#x3b;", "&#60;b&#62;",
    "&#x3C;b&#x3E;", "a &lt; b", "a < b &amp; c", "<b>bold</b> &amp; more", "<i>&eacute;</i>",
    "x &amp; y\n<p>&amp;</p>\nz &amp; w", "&amp;\n&amp;\n<br>\n&amp;",
    "&Aacute&aacute;&AAcute;", "&frac12; &FRAC12; &frac12", "&sup2;&SUP2;&sup2",
    "&ATILDE;&SUP3;", "&Atilde;&sup3;", "&gt&lt", "&GT;&LT;", "&quot&QUOT",
    "&ouml&uuml&auml", "&OUML;", "&alpha;&Alpha;&ALPHA;", "&sigma;&Sigma;&SIGMA;",
    "&lowbar;&UnderBar;", "&NewLine;a", "&Tab;b", "&nbsp;&nbsp;a&nbsp;&nbsp;",
    "&thinsp;&ensp;&emsp;", "&zwj;&zwnj;", "&shy;", "&lrm;&rlm;",
    "&aacute;&#x301;", "e&#x301;", "&#x1b;[31mred&#x1b;[0m", "&#x85;x", "&#x2028;",
    "&#xC3;&#xA9;", "&Atilde;&copy;", "caf&Atilde;&copy;", "&#195;&#169;",
    "&ampé", "&é;", "&ab€;", "&#٣;", "&#x٣;", "&\u00a0amp;", "&amp\u00a0",
    "&" + "a" * 40 + ";", "&" + "a" * 31 + ";", "&" + "a" * 32 + ";", "&amp" + "x" * 40,
    "&" + "A" * 24 + ";", "&" + "A" * 25 + ";", "&#" + "1" * 30 + ";", "&#x" + "F" * 30 + ";",
]
for s in ENTITY_TEXTS:
    add(s)
    add("Tom " + s + " Jerry")
for name, value in sorted(html.entities.html5.items())[::7]:
    add("x&" + name + "y")
for name in sorted(html.entities.html5)[3::11]:
    if name.endswith(";"):
        add("&" + name.upper())
        add("&amp;" + name)
for n in list(range(0, 300, 3)) + [0x7F, 0xA0, 0xAD, 0xFEFF, 0x2028, 0x2029, 0x85, 0x202E, 0xFFFD]:
    add("&#%d;" % n)
    add("&#x%X" % n)

# --- ftfy's other fixes ----------------------------------------------------------------------
for s in [
    "“here’s a test”", "‘quoted’", "‚low‛", "„double‟", "ʼn", "‹single›", "«double»",
    "ﬂuﬃeﬆ", "ĳ Ĳ ŉ Ǳ ǲ ǳ Ǆ ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ",
    "ＬＯＵＤ　ＮＯＩＳＥＳ", "Ｕﾀｰﾝ", "ｱｲｳｴｵ ｶﾞｷﾞ", "ﾊﾟﾋﾟ", "ＡＢＣ１２３！？", "￥１０００", "￠￡￢￣￤￦",
    "ﾡﾢﾣﾤ", "ￂￃￄ", "\uffe8\uffe9\uffee", "\u3000\u3000x",
    "\x1b[36;44mI'm blue, da ba dee\x1b[0m", "\x1b[1mbold\x1b[22m", "\x1b[mplain", "\x1b[38;5;196mred",
    "\x1b[٣m arabic digit", "\x1b[1;2", "\x1b[", "\x1b]0;title\x07", "\x1bx", "a\x1b[2Kb",
    "line1\r\nline2\rline3\u2028line4\u2029line5\x85line6", "\r\n\r\n", "a\r\r\nb",
    "ctrl\x00\x01\x02\x03\x04\x05\x06\x07\x08chars", "tab\tvt\x0bff\x0ccr\rend",
    "\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f",
    "del\x7fete", "\u206a\u206b\u206c\u206d\u206e\u206fx", "\ufeffBOM", "x\ufeffy",
    "\ufff9\ufffa\ufffb\ufffcanchor", "\u200c\u200d\u200e\u200f", "\u202a\u202b\u202c\u202d\u202e",
    "𝅘𝅥𝅮\U0001d173\U0001d17a", "tag\U000e0041\U000e007f", "\x1a alone", "q\x1a?",
    "e\u0301 a\u0300 o\u0308", "\u212b \u2126 \u1e9b\u0323", "\u0041\u030a\u0301",
    "\u1100\u1161", "\u1100\u1161\u11a8", "\uac00\u11a8", "\u0915\u093c", "\u0e40\u0e01",
    "\u05d0\u05b7\u05bc", "\u0627\u0653", "a\u0328\u0301", "a\u0301\u0328",
    "\u0cf3 kannada 15", "a\u0301\U00010efd\u0327", "\U0001e030\u0301", "\U0001e08f\u0301",
    "\ua7cb\ua7cc\ua7da", "\U0001fae8", "\U00011f00\U00011f41",
]:
    add(s)

# --- Whitespace and case ------------------------------------------------------------------
WHITESPACE = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and chr(c).isspace()]
NOT_WHITESPACE = ["\u200b", "\u2060", "\u180e", "\ufeff", "\u00ad", "\u200c"]
for ws in WHITESPACE + NOT_WHITESPACE:
    add("a" + ws + "b" + ws * 2 + "c" + ws)
    add(ws + "lead and trail" + ws)
add("".join(WHITESPACE) + "x" + "".join(WHITESPACE))
add("  many    spaces\t\t\tand\n\n\nlines  ")
for s in [
    "ΟΔΟΣ", "ΣΑΣ", "Σ", "ΑΣ", "Α Σ", "ΑΣ.", "ΑΣΑ", "Σ'Α", "Α'Σ", "ΑΣ'", "A\u0301Σ", "AΣ\u0301",
    "ΑΣ\u0301Α", "1Σ", "Σ1", "ΑΣ\u200dΒ", "ΑΣ\u00ad", "ΑΣ:Β", "ΑΣ·", "ʰΣ", "Aʰ Σ", "ᾼΣ",
    "İ", "İstanbul", "Iı", "ǅ ǈ ǋ ǲ", "ᾈ ᾉ ᾼ", "ẞ", "Ⅻ", "Ⓐ", "𐐀", "𞤀", "Ꭰ", "ꭰ",
    "\u1c89", "\u2c2f", "\U00016e40", "\U0001e900", "\U00010400\U00010428",
    "ΘΕΌΣ ΚΑΙ ΆΝΘΡΩΠΟΣ", "ΌΣΟΙ", "ΜΟΥΣΙΚΉ", "ΟΔΥΣΣΕΎΣ.", "ΔΙΑΣΤΗΜΑ ΣΤΟ ΦΩΣ",
]:
    add(s)
    add(s.upper())
    add(s + " " + s.lower())

# --- Seeded random strings over a mixed alphabet -------------------------------------------
rng = random.Random(20240601)

from ftfy import badness, chardata  # noqa: E402

MOJIBAKE_CHARS = sorted(
    {c for cat in badness.MOJIBAKE_CATEGORIES.values() for c in cat if c != "-"}
    | {c for cat in chardata.UTF8_CLUES.values() for c in cat if c != "-"}
    | {chr(b) for b in range(0x80, 0x100)}
)
ASCII = [chr(c) for c in range(0x20, 0x7F)]
CONTROLS = [chr(c) for c in list(range(0, 0x20)) + [0x7F] + list(range(0x80, 0xA0))]
OTHER = list(
    "αβγδΣσςΩωΑΒΓΞΟабвгдЖЁЂВГРСвŞşİıĞğÇçÖöÜü日本語中文한국어ｶﾀﾅＡＢＣ　"
    "“”‘’„‟‚ʼ‹›«»–—…•€£¥©®™°±²³µ¶§×÷½¼¾ﬁﬂĳǅ√≈∂†≠≤≥π‚ÄâóàäêŒœŸŠ®µ"
) + ["\u0301", "\u0308", "\u0327", "\u200d", "\u200b", "\ufeff", "\u2028", "\u2029", "\x85",
     "\u3000", "\xa0", "\U0001f600", "\U0001f44d", "\U0001f3fd", "\ufffd", "\ue000", "\uf8ff",
     "\U00010efd", "\ua7cb", "\u0cf3", "\U0001e08f", "\uac00", "\u1100", "\u1161", "\u11a8"]
FRAGMENTS = ["&", "&amp;", "&amp", "&#", "&#x", ";", "#", "<", ">", "\x1b[", "m", "\n", "\r\n", " ",
             "Ã", "Â", "â€", "Ã©", "Ã\xa0", "Ð", "Ñ", "ï»¿", "\x1a", "?", "&lt;", "&copy", "&NTILDE;"]

POOLS = [
    (ASCII, 30), (MOJIBAKE_CHARS, 25), (OTHER, 20), (CONTROLS, 5), (FRAGMENTS, 15),
    ([" ", "\t", "\n"], 5),
]


def random_text(length: int) -> str:
    parts = []
    for _ in range(length):
        pool = rng.choices([p for p, _ in POOLS], weights=[w for _, w in POOLS])[0]
        parts.append(rng.choice(pool))
    return "".join(parts)


for _ in range(900):
    add(random_text(rng.randint(1, 24)))

# Random multilingual text, then mojibake'd with a random codec, sometimes only in part.
WORD_SOURCE = [w for s in SAMPLES for w in s.split()]
for _ in range(700):
    words = rng.choices(WORD_SOURCE, k=rng.randint(1, 5))
    text = " ".join(words)
    codec = rng.choice(CODECS)
    bad = mojibake(text, codec) or text
    roll = rng.random()
    if roll < 0.2:
        cut = rng.randint(0, len(bad))
        bad = bad[:cut] + text[len(text) * cut // max(len(bad), 1):]
    elif roll < 0.35:
        bad = bad.replace("\xa0", " ")
    elif roll < 0.45:
        bad = rng.choice(["&amp;", "&lt;", "<b>", "\x1b[1m", "“", "ﬁ", "Ｘ"]).join([bad, text])
    elif roll < 0.55:
        bad = bad.upper()
    add(bad)

# Random characters from all of Unicode (assigned or not; never surrogates).
for _ in range(250):
    chars = []
    for _ in range(rng.randint(1, 12)):
        cp = rng.choice([rng.randrange(0x80, 0x800), rng.randrange(0x800, 0x10000),
                         rng.randrange(0x10000, 0x110000)])
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0xFFFD
        chars.append(chr(cp))
    add("".join(chars))


def main() -> None:
    seen = set()
    rows = []
    for text in CASES:
        if text in seen:
            continue
        seen.add(text)
        clean = _clean_lower(text)
        for s in (text, clean):
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
        rows.append(json.dumps({"text": text, "clean": clean}, ensure_ascii=False))
    OUT.write_text("\n".join(rows) + "\n", encoding="utf-8")
    changed = sum(1 for r in rows if json.loads(r)["text"] != json.loads(r)["clean"])
    print(f"wrote {len(rows)} cases ({changed} changed by cleaning) to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
