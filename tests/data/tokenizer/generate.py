#!/usr/bin/env python3
"""Golden token ids: open_clip's SimpleTokenizer on >= 1200 varied strings.

    python3 tests/data/tokenizer/generate.py      # writes tests/data/tokenizer/cases.jsonl

Each line is {"text": "...", "ids": [49406, ..., 49407]}: open_clip `SimpleTokenizer()`
(default clean='lower' = ftfy.fix_text, html.unescape twice, whitespace collapse, strip,
lower) with start/end tokens and open_clip's truncation to context 77 (sot + tokens; when
longer than 77, cut to 77 and set the last id to eot). No zero padding.

A line may also carry "ids_openai": the ids of OpenAI's original CLIP tokenizer
(github.com/openai/CLIP simple_tokenizer.py + clip.tokenize(truncate=True)) where they differ
from open_clip's. They differ only for text that contains special-token strings:
open_clip >= 3 names its special tokens '<start_of_text>' / '<end_of_text>', so a literal
'<end_of_text>' in the text becomes id 49407 and a literal '<|endoftext|>' is split into
ordinary BPE pieces; OpenAI's tokenizer (and a Hugging Face CLIP tokenizer.json, whose added
tokens are '<|startoftext|>' / '<|endoftext|>') does the opposite.

The strings come from `cases()` (also used by tests/data/text_clean/generate.py). They are
deterministic: fixed lists plus strings drawn from a seeded RNG. The script also reports
where Hugging Face `tokenizer.json` (built by models/export.py) fed with the open_clip-
cleaned text disagrees with open_clip, so the engine's authors know the known gaps.
"""

from __future__ import annotations

import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
CONTEXT_LENGTH = 77
SEED = 20240517


def _plain_and_task_phrases() -> list[str]:
    colors = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "grey",
              "transparent", "metallic", "wooden", "striped", "dark-blue"]
    objects = ["cup", "ball", "mug", "bottle", "sponge", "drawer handle", "cube", "apple", "banana", "towel",
               "screwdriver", "bowl", "plate", "box", "can of soda", "marker", "book", "shoe", "pair of scissors",
               "remote control", "teddy bear", "power drill", "lego brick", "cable", "laptop"]
    templates = ["{}", "a {}", "a photo of a {}.", "a photo of the {}", "a blurry photo of a {}.",
                 "a close-up photo of a {}.", "there is a {} on the table", "itap of a {}.",
                 "a bad photo of the {}.", "a cropped photo of a {}", "{} on a shelf", "the {}"]
    verbs = ["pick up", "put down", "grasp", "push", "pull", "open", "close", "move", "rotate", "place",
             "lift", "hand me", "point at", "stack", "wipe"]
    places = ["on the table", "into the drawer", "next to the sink", "in the blue bin", "onto the shelf",
              "left of the mug", "behind the laptop", "under the chair", "on top of the box", ""]
    rng = random.Random(SEED)
    out = []
    for _ in range(220):
        obj = f"{rng.choice(colors)} {rng.choice(objects)}"
        out.append(rng.choice(templates).format(obj))
    for _ in range(200):
        phrase = f"{rng.choice(verbs)} the {rng.choice(colors)} {rng.choice(objects)} {rng.choice(places)}".strip()
        if rng.random() < 0.3:
            phrase = phrase.capitalize() + rng.choice([".", "!", "?", "", " please", "..."])
        out.append(phrase)
    out += [
        "red cup", "blue ball", "the drawer handle", "a photo of a red cup.", "pick up the red cup",
        "Pick up the red cup.", "PICK UP THE RED CUP", "open the top drawer, then grab the blue ball",
        "robot", "a robot arm", "an empty table", "nothing", "person", "a person waving at the camera",
    ]
    return out


def _punctuation_numbers_contractions() -> list[str]:
    out = [
        "hello, world!", "hello,world", "wait... what?!", "(parenthesised) [bracketed] {braced}",
        "semi;colon:colon", "dash-separated-words", "em—dash – en dash", "under_score_words",
        "slash/separated\\words", "quote \"double\" 'single'", "a.b.c.d", "?!?!?!", "...", "---",
        "#hashtag @mention", "100% sure", "$5.99 or €4,50 or £3 or ¥1000", "a+b=c", "x*y^z", "~tilde~",
        "`backticks`", "|pipes|", "<angle brackets>", "e-mail: someone@example.com",
        "https://example.com/path?query=1&b=2#frag", "C:\\Users\\robot\\file.txt", "¡hola! ¿qué tal?",
        "«guillemets» ‹single›", "„low quotes“ ‚low single‘", "…ellipsis char", "•bullet • point",
        "°degree 90° north", "1/2 ½ ¾ ⅓", "™ ® ©", "§ ¶ †", "→ ← ↑ ↓ ⇒", "✓ ✗ ✔", "★☆", "♠♣♥♦",
        "0", "7", "42", "3.14159", "1,000,000", "1 000 000", "2024-05-17", "12:30:45", "v1.2.3",
        "0x1F 0b1010", "1st 2nd 3rd 4th", "-17 +23", "1e-5", "98.6°F", "6ft 2in", "10kg", "1080p",
        "٣٤٥ Arabic-Indic digits", "१२३ Devanagari digits", "①②③ circled", "Ⅻ roman numeral",
        "²³ superscripts ₂ subscripts", "12345678901234567890", "pi is 3.1415926535897932384626",
        "it's", "don't", "they're", "we've", "I'm", "we'll", "she'd", "it's the robot's cup",
        "IT'S", "DON'T", "THEY'RE", "WE'VE", "I'M", "WE'LL", "SHE'D", "It'S", "dOn'T",
        "it’s", "don’t", "they’re", "we’ve", "I’m", "we’ll", "she’d", "IT’S", "DON‘T",
        "rock 'n' roll", "'tis", "the dogs' bowls", "'s", "'t", "''", "'quoted'", "can't won't shan't",
        "y'all'd've", "o'clock", "l'été", "it`s", "it´s", "it‛s", "it′s", "it＇s",
    ]
    return out


def _unicode_letters_and_emoji() -> list[str]:
    return [
        "café", "naïve", "Ångström", "façade", "jalapeño", "crème brûlée", "Über", "Straße", "STRASSE",
        "cafe\u0301 (combining acute)", "e\u0301\u0302 stacked marks", "Å (A + ring)",
        "ΟΔΟΣ", "Οδός", "ΣΑΣ", "σας", "ΣΊΣΥΦΟΣ", "Σ", "ΑΣ.", "word ΟΔΟΣ, word", "ΌΣΟΣ ΣΟΦΟΣ",
        "Привет, мир!", "ЁЛКА ёлка", "Україна", "Ѣѣ",
        "東京タワー", "你好，世界！", "日本語のテキスト", "한국어 텍스트", "안녕하세요", "ｶﾀｶﾅ halfwidth",
        "مرحبا بالعالم", "مَرْحَبًا", "שלום עולם", "नमस्ते दुनिया", "हिन्दी", "বাংলা", "தமிழ்", "ไทย สวัสดี",
        "İstanbul", "ISTANBUL", "ıi İI", "İ", "DİYARBAKIR", "Tiếng Việt", "Ελληνικά", "ქართული", "Հայերեն",
        "ǅ ǈ ǋ titlecase digraphs", "ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ", "ﬁsh ﬂower eﬀort", "ŉ", "ǰ", "ẞ capital sharp s",
        "Ⓐⓑⓒ", "𝐀𝐁𝐂 math bold", "𝔣𝔯𝔞𝔨𝔱𝔲𝔯", "ℌℑℜ", "K (kelvin sign)", "Ω (ohm sign)", "Å (angstrom sign)",
        "😀", "😀😃😄", "I ❤️ robots", "❤", "👍🏽 thumbs up medium", "👩‍💻 woman technologist",
        "👨‍👩‍👧‍👦", "🏳️‍🌈", "🏴‍☠️", "🇺🇸🇯🇵🇩🇪", "🇫🇷 flag", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland", "1️⃣2️⃣#️⃣",
        "🤖 robot emoji", "🍎🍌🍒", "☕ coffee", "⚽️", "👁️‍🗨️", "🧑🏿‍🚀", "🫠", "🦾 mechanical arm",
        "a😀b", "red🔴cup", "emoji at end 🎉", "ñ̃", "\U0001F600" * 3,
    ]


def _html_and_cleaning() -> list[str]:
    return [
        "&amp;", "&lt;b&gt;bold&lt;/b&gt;", "&#39;single&#39;", "&#x27;hex&#x27;", "&quot;quoted&quot;",
        "Tom &amp; Jerry", "AT&amp;T", "AT&T", "fish &amp;amp; chips", "&amp;amp;amp;", "&amp;lt;",
        "&copy 2024", "&copy; 2024", "&amp", "&ampere", "&eacute;t&eacute;", "&Eacute;", "caf&eacute",
        "&nbsp;nbsp&nbsp;", "a&nbsp;&nbsp;b", "&#128512;", "&#x1F600;", "&#0;", "&#x110000;", "&#xD800;",
        "&#65;&#66;&#67;", "&#x41;&#X42;", "&;", "& amp;", "&unknown;", "&notit;", "&notin;", "&le;&ge;",
        "&lt;|endoftext|&gt;", "&amp;lt;|endoftext|&amp;gt;", "&#60;script&#62;", "&frac12; cup",
        "cafe&#769;", "cafe&#x301; au lait", "&#x41;&#x30A;ngstr&ouml;m", "n&#771;o&#776;", "cafe&amp;#769;",
        # With a '<' in the text ftfy leaves entities alone; html.unescape then yields non-NFC text:
        "<b>cafe&#769;</b>", "a < b: &#x41;&#x30A;ngstr&ouml;m", "<i>n&#771;o&#776;</i> &amp; e&#x301;",
        "&hellip;", "&mdash;", "&rsquo;s", "&ldquo;smart&rdquo;", "&Sigma;&sigma;&sigmaf;",
        "<b>html tags</b>", "<i>&amp;</i>", "<p>a &lt; b</p>", "a < b && c > d", "<br/>", "<br>line",
        "<div class=\"x\">text</div>", "1 < 2 & 3 > 2", "a &lt; b < c", "<|endoftext|>", "<|startoftext|>",
        "a <|endoftext|> b", "<|endoftext|><|endoftext|>", "<|ENDOFTEXT|>", "<start_of_text>",
        "<end_of_text>", "x<end_of_text>y", "<|endoftext", "endoftext|>",
        "", " ", "   ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u2029", "\x1c\x1d\x1e\x1f",
        " \t\n\r\x0b\x0c ", "\u200b", "\ufeff", "\u00ad",
        "tab\tseparated\twords", "new\nline", "crlf\r\nline", "cr\ronly", "nbsp\u00a0between",
        "ideographic\u3000space", "line\u2028separator", "para\u2029separator", "file\x1cseparator",
        "group\x1dsep", "record\x1esep", "unit\x1fsep", "nel\x85next line", "vertical\x0btab",
        "form\x0cfeed", "zero\u200bwidth", "mongolian\u180evowel", "thin\u2009space", "em\u2003space",
        "narrow\u202fnbsp", "  leading and trailing  ", "multiple     spaces   inside",
        "\n\n\nnewlines first", "bom\ufefffirst", "soft\u00adhyphen", "word\u2060joiner",
        "cafÃ©", "â€œquotedâ€\x9d", "Ã¼ber", "naÃ¯ve", "Ã©tÃ©", "doesnâ€™t", "Ã¢â‚¬â„¢",
        "The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t have eyebrows.", "ÃƒÂ©", "Ã\xa0 la carte", "Ã  la carte",
        "â€” dash", "â€¦", "Ã¶sterreich", "ÐŸÑ€Ð¸Ð²ÐµÑ‚", "Ñ‚ÐµÑÑ‚", "I â™¥ NY", "Â¡Hola!", "Â£5",
        "l’humanitÃ©", "Ã±", "sÃ©ance", "Ð\xa0Ð¾Ð´Ð¸Ð½Ð°",
        "ｆｕｌｌｗｉｄｔｈ", "ＡＢＣ", "１２３", "ｈｅｌｌｏ　ｗｏｒｌｄ", "（ｐａｒｅｎｓ）", "！？", "ｌ'ｅｔｅ",
        "\x00null", "bell\x07", "del\x7f", "c1\x80\x81\x9f", "\x8d\x8f\x90 more c1", "esc\x1bchar",
        "\x1b[31mred\x1b[0m", "\x1b[1;32mbold green\x1b[0m text", "\x1b]0;title\x07after", "\x1b[2J\x1b[H",
        "lrm\u200emark", "rlo\u202ereversed\u202c", "\ufff9anchor\ufffb", "tag\U000e0041chars", "\ufffd replacement",
        "private \ue000 use", "\uffff nonchar", "\U0010FFFF last", "\u034f cgj", "\u2066isolate\u2069",
        "ŉ", "ǲ", "Ⅻ", "℃ ℉", "㎏ ㎞", "㈱", "ｱｲｳｴｵ", "ﾟﾞ", "ᄀ ᅡ jamo", "가각", "ヴ", "ｳﾞ",
        "“curly double”", "‘curly single’", "‹angle›", "‟reversed‟", "″double prime″", "＂fullwidth＂",
        "quote's’curly", "don\u2019t", "\u201cnested \u2018quotes\u2019\u201d",
    ]


def _long_texts() -> list[str]:
    words = ("the quick brown fox jumps over the lazy dog while a robot arm picks up the red cup "
             "and places it carefully into the open drawer next to the blue ball").split()
    out = [
        " ".join(words * 3),
        " ".join(words * 2),
        " ".join(str(i) for i in range(60)),
        "0123456789" * 10,
        "😀" * 80,
        "a " * 76,
        "a " * 75,
        "a " * 74,
        "word " * 200,
        "supercalifragilisticexpialidocious " * 20,
        "x" * 1000,
        ", ".join(["red cup", "blue ball", "green sponge", "yellow duck"] * 10),
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
        "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut "
        "aliquip ex ea commodo consequat.",
        "東京" * 60,
        "&amp;" * 100,
        "<|endoftext|> " * 100,
    ]
    # Lengths around the truncation boundary (75..79 tokens before truncation).
    for n in range(70, 82):
        out.append(" ".join(["cup"] * n))
    return out


ALPHABET_PARTS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", "0123456789",
    " " * 8, ".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`", "’‘“”«»…—–",
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœ", "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝŸ", "ΑΒΓΔΕΖΗΘΣσςαβγδεζηθ",
    "АБВГДЕЖЗИЙабвгдежзий", "東京大阪日本語中文漢字", "ひらがなカタカナ", "한국어", "مرحبا", "नमस्ते",
    "İıŞşĞğ", "😀🤖👍🏽❤️🇺🇸🎉", "\u200d\ufe0f\u0301\u0308\u20e3", "\t\n\r\u00a0\u3000\u2028\x1c\x85",
    "&;#x", "ﬁﬂＡＢ１２", "\x00\x07\x1b\x7f\x80\x9d", "ÃÂâ€™©®",
]
ENTITY_FRAGMENTS = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x41;", "&nbsp;", "&copy", "&amp", "&eacute;",
                    "<b>", "</b>", "<|endoftext|>", "\x1b[0m", "'s", "'ll", "’t", "cafÃ©", "e\u0301"]


def _random_strings(n: int) -> list[str]:
    rng = random.Random(SEED + 1)
    out = []
    for _ in range(n):
        parts = rng.sample(ALPHABET_PARTS, rng.randint(1, 5))
        alphabet = "".join(parts)
        length = rng.choice([1, 2, 3, 5, 8, 13, 21, 34, 55, 89])
        chars = []
        while len(chars) < length:
            if rng.random() < 0.08:
                chars.append(rng.choice(ENTITY_FRAGMENTS))
            else:
                chars.append(rng.choice(alphabet))
        out.append("".join(chars))
    return out


def cases() -> list[str]:
    """All test strings, deduplicated, in a fixed order."""
    all_cases = (_plain_and_task_phrases() + _punctuation_numbers_contractions() + _unicode_letters_and_emoji()
                 + _html_and_cleaning() + _long_texts() + _random_strings(520))
    seen, out = set(), []
    for c in all_cases:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def dump_line(obj) -> str:
    """One JSON object per line; U+2028/U+2029/U+0085 escaped so every line splitter agrees."""
    s = json.dumps(obj, ensure_ascii=False)
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")


def open_clip_ids(tok, text: str) -> list[int]:
    ids = [tok.sot_token_id] + tok.encode(text) + [tok.eot_token_id]
    if len(ids) > CONTEXT_LENGTH:
        ids = ids[:CONTEXT_LENGTH]
        ids[-1] = tok.eot_token_id
    return ids


def openai_original_tokenizer():
    """open_clip's SimpleTokenizer turned back into OpenAI's original: special tokens named
    '<|startoftext|>' / '<|endoftext|>' in the vocab, the cache and the split regex."""
    import regex
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()
    for old, new in (("<start_of_text>", "<|startoftext|>"), ("<end_of_text>", "<|endoftext|>")):
        tok.encoder[new] = tok.encoder.pop(old)
    tok.decoder = {v: k for k, v in tok.encoder.items()}
    tok.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
    tok.pat = regex.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
        regex.IGNORECASE)
    return tok


def main() -> int:
    import torch
    from open_clip.tokenizer import SimpleTokenizer, _clean_lower

    tok = SimpleTokenizer()
    openai_tok = openai_original_tokenizer()
    texts = cases()
    rows = []
    for t in texts:
        ids = open_clip_ids(tok, t)
        # Cross-check against open_clip's own batched __call__ (zero padded to 77).
        ref = tok([t])[0]
        assert ids + [0] * (CONTEXT_LENGTH - len(ids)) == ref.tolist(), t
        row = {"text": t, "ids": ids}
        ids_openai = open_clip_ids(openai_tok, t)
        if ids_openai != ids:
            assert any(s in _clean_lower(t) for s in ("<|startoftext|>", "<|endoftext|>", "<start_of_text>",
                                                      "<end_of_text>")), t
            row["ids_openai"] = ids_openai
        rows.append(row)
    assert isinstance(ref, torch.Tensor)
    path = os.path.join(HERE, "cases.jsonl")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(dump_line(r) + "\n")
    # Round trip.
    with open(path, encoding="utf-8") as f:
        back = [json.loads(line) for line in f.read().split("\n") if line]
    assert back == rows
    n_trunc = sum(1 for r in rows if len(r["ids"]) == CONTEXT_LENGTH)
    print(f"wrote {path}: {len(rows)} cases ({n_trunc} at the 77-token limit)")

    # Known gaps of a Hugging Face tokenizer.json fed with the open_clip-cleaned text.
    bundle_tok = os.path.join(ROOT, "tests", "fixtures", "tiny-clip", "tokenizer.json")
    if os.path.exists(bundle_tok):
        from tokenizers import Tokenizer

        hf = Tokenizer.from_file(bundle_tok)
        variants = {"as shipped": hf}
        bare = Tokenizer.from_file(bundle_tok)
        bare.normalizer = None
        variants["normalizer removed"] = bare
        print(f"{sum('ids_openai' in r for r in rows)} lines carry ids_openai (literal special-token strings)")
        for label, h in variants.items():
            for key in ("ids", "ids_openai"):
                bad = []
                for r in rows:
                    got = h.encode(_clean_lower(r["text"])).ids
                    if len(got) > CONTEXT_LENGTH:
                        got = got[:CONTEXT_LENGTH]
                        got[-1] = tok.eot_token_id
                    if got != r.get(key, r["ids"]):
                        bad.append(r["text"])
                ref_name = "open_clip" if key == "ids" else "OpenAI original"
                print(f"tokenizer.json ({label}) on _clean_lower(text) vs {ref_name}: "
                      f"{len(rows) - len(bad)}/{len(rows)} equal")
                for t in bad:
                    if key == "ids_openai" or not any(s in t for s in ("endoftext", "end_of_text", "start")):
                        print(f"    differs: {t[:80]!r} -> clean {_clean_lower(t)[:80]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
