//! OpenAI CLIP's text cleaning before BPE, reproduced exactly: open_clip's `SimpleTokenizer`
//! (default `clean='lower'`) computes `whitespace_clean(basic_clean(text)).lower()`, where
//! `basic_clean` is `html.unescape(html.unescape(ftfy.fix_text(text))).strip()`.
//!
//! [`clip_clean`] is that whole pipeline. Its parts are public too: [`ftfy_fix_text`]
//! (ftfy 6.3.1's `fix_text` with its default configuration), [`html_unescape`] (Python's
//! `html.unescape`), [`whitespace_clean`] and [`python_lower`] (Python's `str.lower`).
//! Python's string semantics follow its own Unicode version (14.0 for Python 3.11), so
//! lower-casing, whitespace and regex classes come from tables generated out of Python
//! (`python_str_tables.rs`), and ftfy's character classes and codecs from tables generated
//! out of ftfy (`ftfy_tables.rs`); the generator scripts sit next to them.
//!
//! ftfy steps reproduced: segmentation into lines, `unescape_html` ("auto": off from the
//! first line containing `<` on), `fix_encoding` (the `is_bad` heuristic, re-encoding in the
//! ten single-byte codecs incl. the `sloppy-*` ones, `restore_byte_a0`,
//! `replace_lossy_sequences`, the `utf-8-variants` decoder, `decode_inconsistent_utf8`,
//! Latin-1 read as Windows-1252, `fix_c1_controls`), `fix_latin_ligatures`,
//! `fix_character_width`, `uncurl_quotes`, `fix_line_breaks`, `remove_terminal_escapes`,
//! `remove_control_chars` and NFC, each repeated to a fixed point as ftfy does.
//! `fix_surrogates` has nothing to do: a Rust `str` holds no surrogates and no step makes one.

use std::cmp::Ordering;

use unicode_normalization::UnicodeNormalization;

use super::ftfy_tables::{self as ft, Charmap};
use super::html_entities::HTML5_ENTITIES;
use super::python_str_tables as py;

/// ftfy's `max_decode_length`: the longest segment fixed at once, in code points.
const MAX_DECODE_LENGTH: usize = 1_000_000;

/// A bound on ftfy's fix-until-unchanged loops; ftfy itself has none, and real text
/// settles in a handful of rounds.
const MAX_ROUNDS: usize = 1000;

/// CLIP's text cleaning: `whitespace_clean(basic_clean(text)).lower()` as open_clip's
/// `SimpleTokenizer` does it before BPE.
pub fn clip_clean(text: &str) -> String {
    python_lower(&whitespace_clean(&basic_clean(text)))
}

/// open_clip's `basic_clean`: ftfy, HTML entities unescaped twice, whitespace stripped.
pub fn basic_clean(text: &str) -> String {
    let fixed = ftfy_fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    python_strip(&unescaped).to_owned()
}

/// open_clip's `whitespace_clean`: every run of (Python) whitespace becomes one space, and
/// the ends are stripped (`" ".join(text.split())`).
pub fn whitespace_clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(is_python_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Python's `str.strip()` with no argument.
fn python_strip(text: &str) -> &str {
    text.trim_matches(is_python_space)
}

/// Python's `str.isspace()` for one character (also the regex `\s` of a `str` pattern).
pub fn is_python_space(c: char) -> bool {
    in_ranges(py::WHITESPACE, c)
}

fn in_ranges(table: &[(u32, u32)], c: char) -> bool {
    let cp = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                Ordering::Less
            } else if lo > cp {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_ok()
}

fn lookup<V: Copy>(table: &[(u32, V)], c: char) -> Option<V> {
    table
        .binary_search_by_key(&(c as u32), |&(cp, _)| cp)
        .ok()
        .map(|k| table[k].1)
}

fn lookup_name(table: &[(&'static str, &'static str)], name: &str) -> Option<&'static str> {
    table
        .binary_search_by(|&(key, _)| key.cmp(name))
        .ok()
        .map(|k| table[k].1)
}

// ---------------------------------------------------------------------------------------
// Python's str.lower

/// Python's `str.lower()`: the full lower-case mapping (İ becomes "i̇") with the
/// final-sigma rule, in Python's Unicode version.
pub fn python_lower(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if c == '\u{3a3}' {
            out.push(if is_final_sigma(&chars, i) {
                '\u{3c2}'
            } else {
                '\u{3c3}'
            });
        } else {
            match lookup(py::LOWER, c) {
                Some(lower) => out.push_str(lower),
                None => out.push(c),
            }
        }
    }
    out
}

/// CPython's `handle_capital_sigma`: a cased letter before (skipping case-ignorable
/// characters) and none after.
fn is_final_sigma(chars: &[char], i: usize) -> bool {
    let before = chars[..i]
        .iter()
        .rev()
        .find(|&&c| !in_ranges(py::CASE_IGNORABLE, c));
    if !before.is_some_and(|&c| in_ranges(py::CASED, c)) {
        return false;
    }
    let after = chars[i + 1..]
        .iter()
        .find(|&&c| !in_ranges(py::CASE_IGNORABLE, c));
    !after.is_some_and(|&c| in_ranges(py::CASED, c))
}

// ---------------------------------------------------------------------------------------
// Python's html.unescape

/// Python's `html.unescape`: named references from the HTML5 table (legacy names without
/// `;` too, and the longest legacy prefix of an unknown name), decimal and hex references
/// with the HTML5 replacements for invalid ones.
pub fn html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '&' {
            if let Some((end, replacement)) = char_ref(&chars, i + 1) {
                out.push_str(&replacement);
                i = end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Matches `#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?` at `start` (just after
/// an `&`) and returns where the match ends and what replaces `&` + match.
fn char_ref(chars: &[char], start: usize) -> Option<(usize, String)> {
    let n = chars.len();
    let run = |from: usize, ok: fn(&char) -> bool| {
        from + chars[from.min(n)..].iter().take_while(|c| ok(c)).count()
    };
    let with_semicolon = |end: usize| {
        if chars.get(end) == Some(&';') {
            end + 1
        } else {
            end
        }
    };
    if chars.get(start) == Some(&'#') {
        let digits_end = run(start + 1, char::is_ascii_digit);
        if digits_end > start + 1 {
            let value = parse_number(&chars[start + 1..digits_end], 10);
            return Some((with_semicolon(digits_end), numeric_char_ref(value)));
        }
        if matches!(chars.get(start + 1), Some('x' | 'X')) {
            let digits_end = run(start + 2, char::is_ascii_hexdigit);
            if digits_end > start + 2 {
                let value = parse_number(&chars[start + 2..digits_end], 16);
                return Some((with_semicolon(digits_end), numeric_char_ref(value)));
            }
        }
        return None;
    }
    let name_len = chars[start.min(n)..]
        .iter()
        .take(32)
        .take_while(|&&c| !matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';'))
        .count();
    if name_len == 0 {
        return None;
    }
    let end = with_semicolon(start + name_len);
    let s = &chars[start..end];
    let name: String = s.iter().collect();
    if let Some(value) = lookup_name(HTML5_ENTITIES, &name) {
        return Some((end, value.to_owned()));
    }
    for x in (2..s.len()).rev() {
        let prefix: String = s[..x].iter().collect();
        if let Some(value) = lookup_name(HTML5_ENTITIES, &prefix) {
            let mut replacement = value.to_owned();
            replacement.extend(&s[x..]);
            return Some((end, replacement));
        }
    }
    Some((end, format!("&{name}")))
}

/// Parses ASCII digits, saturating far above U+10FFFF (Python's integers do not overflow;
/// Python 3.11 raises `ValueError` on a decimal reference of more than 4300 digits, where
/// this gives U+FFFD like any other out-of-range reference).
fn parse_number(digits: &[char], radix: u32) -> u64 {
    digits.iter().fold(0u64, |acc, c| {
        let d = c.to_digit(radix).unwrap_or(0) as u64;
        acc.saturating_mul(radix as u64)
            .saturating_add(d)
            .min(1 << 40)
    })
}

/// `html._replace_charref` for a numeric reference.
fn numeric_char_ref(value: u64) -> String {
    if let Some(replacement) = invalid_charref(value) {
        return replacement.to_string();
    }
    if (0xD800..=0xDFFF).contains(&value) || value > 0x10FFFF {
        return '\u{fffd}'.to_string();
    }
    let invalid_codepoint = matches!(value, 0x1..=0x8 | 0xB | 0xE..=0x1F | 0x7F..=0x9F | 0xFDD0..=0xFDEF)
        || (value & 0xFFFE) == 0xFFFE;
    if invalid_codepoint {
        return String::new();
    }
    char::from_u32(value as u32)
        .map(String::from)
        .unwrap_or_default()
}

/// `html._invalid_charrefs`: the HTML5 replacements for NUL, CR and the C1 range.
fn invalid_charref(value: u64) -> Option<char> {
    Some(match value {
        0x00 => '\u{fffd}',
        0x0d => '\r',
        0x80 => '\u{20ac}',
        0x81 => '\u{81}',
        0x82 => '\u{201a}',
        0x83 => '\u{192}',
        0x84 => '\u{201e}',
        0x85 => '\u{2026}',
        0x86 => '\u{2020}',
        0x87 => '\u{2021}',
        0x88 => '\u{2c6}',
        0x89 => '\u{2030}',
        0x8a => '\u{160}',
        0x8b => '\u{2039}',
        0x8c => '\u{152}',
        0x8d => '\u{8d}',
        0x8e => '\u{17d}',
        0x8f => '\u{8f}',
        0x90 => '\u{90}',
        0x91 => '\u{2018}',
        0x92 => '\u{2019}',
        0x93 => '\u{201c}',
        0x94 => '\u{201d}',
        0x95 => '\u{2022}',
        0x96 => '\u{2013}',
        0x97 => '\u{2014}',
        0x98 => '\u{2dc}',
        0x99 => '\u{2122}',
        0x9a => '\u{161}',
        0x9b => '\u{203a}',
        0x9c => '\u{153}',
        0x9d => '\u{9d}',
        0x9e => '\u{17e}',
        0x9f => '\u{178}',
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// ftfy.fix_text

/// ftfy 6.3.1's `fix_text(text)` with the default `TextFixerConfig`.
pub fn ftfy_fix_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut unescape_html = true;
    let mut pos = 0;
    while pos < chars.len() {
        let mut end = match chars[pos..].iter().position(|&c| c == '\n') {
            Some(k) => pos + k + 1,
            None => chars.len(),
        };
        end = end.min(pos + MAX_DECODE_LENGTH);
        let segment = &chars[pos..end];
        // "auto": once a segment holds '<', ftfy turns entity decoding off for the rest.
        if unescape_html && segment.contains(&'<') {
            unescape_html = false;
        }
        out.extend(fix_segment(segment.to_vec(), unescape_html));
        pos = end;
    }
    out
}

/// ftfy's `fix_and_explain` on one segment: every fixer in order, until nothing changes.
fn fix_segment(mut text: Vec<char>, unescape_html: bool) -> Vec<char> {
    for _ in 0..MAX_ROUNDS {
        let before = text.clone();
        if unescape_html {
            text = ftfy_unescape_html(&text);
        }
        text = fix_encoding(text);
        text = fix_c1_controls(&text);
        text = translate(&text, ft::LIGATURES);
        text = translate(&text, ft::WIDTH_MAP);
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        text = remove_terminal_escapes(&text);
        text = translate(&text, ft::CONTROL_CHARS);
        text = nfc(&text);
        if text == before {
            break;
        }
    }
    text
}

/// `str.translate` with a table of `(code point, replacement)`.
fn translate(text: &[char], table: &[(u32, &str)]) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    for &c in text {
        match lookup(table, c) {
            Some(replacement) => out.extend(replacement.chars()),
            None => out.push(c),
        }
    }
    out
}

/// ftfy's `unescape_html`: `&#?[0-9A-Za-z]{1,24};` replaced when it is an HTML5 entity
/// with `;`, one of ftfy's upper-cased ones, or a numeric reference `html.unescape`
/// decodes entirely.
fn ftfy_unescape_html(text: &[char]) -> Vec<char> {
    if !text.contains(&'&') {
        return text.to_vec();
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == '&' {
            if let Some(end) = entity_match_end(text, i) {
                let entity: String = text[i..end].iter().collect();
                let name = &entity[1..entity.len() - 1];
                let html5 = lookup_name(HTML5_ENTITIES, &entity[1..]);
                let replacement = html5.or_else(|| lookup_name(ft::UPPER_ENTITIES, name));
                match replacement {
                    Some(value) => out.extend(value.chars()),
                    None if entity.starts_with("&#") => {
                        let unescaped = html_unescape(&entity);
                        if unescaped.contains(';') {
                            out.extend(entity.chars());
                        } else {
                            out.extend(unescaped.chars());
                        }
                    }
                    None => out.extend(entity.chars()),
                }
                i = end;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// End of a match of `&#?[0-9A-Za-z]{1,24};` starting at `i`.
fn entity_match_end(text: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if text.get(j) == Some(&'#') {
        j += 1;
    }
    let run = text[j.min(text.len())..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    if (1..=24).contains(&run) && text.get(j + run) == Some(&';') {
        Some(j + run + 1)
    } else {
        None
    }
}

/// ftfy's `remove_terminal_escapes`: `\x1b\[((?:\d|;)*)([a-zA-Z])` removed (`\d` being any
/// Unicode decimal digit, as in a Python `str` regex).
fn remove_terminal_escapes(text: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == '\x1b' && text.get(i + 1) == Some(&'[') {
            let params = text[i + 2..]
                .iter()
                .take_while(|&&c| c == ';' || in_ranges(py::DECIMAL, c))
                .count();
            if text
                .get(i + 2 + params)
                .is_some_and(|c| c.is_ascii_alphabetic())
            {
                i += params + 3;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// ftfy's `uncurl_quotes`.
fn uncurl_quotes(text: &[char]) -> Vec<char> {
    text.iter()
        .map(|&c| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            _ => c,
        })
        .collect()
}

/// ftfy's `fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+85 become `\n`.
fn fix_line_breaks(text: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            '\r' => {
                out.push('\n');
                if text.get(i + 1) == Some(&'\n') {
                    i += 1;
                }
            }
            '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// `unicodedata.normalize("NFC", text)` in Python's Unicode version. Characters Python
/// does not know yet are inert there (no decomposition, class 0, no composition), so the
/// text is normalised in pieces between them; for assigned characters normalisation is
/// stable across Unicode versions, so the newer tables give Python's result.
fn nfc(text: &[char]) -> Vec<char> {
    if text.iter().all(|c| c.is_ascii()) {
        return text.to_vec();
    }
    let mut out = Vec::with_capacity(text.len());
    for piece in text.split_inclusive(|&c| in_ranges(py::UNASSIGNED, c)) {
        let (body, unknown) = match piece.last() {
            Some(&c) if in_ranges(py::UNASSIGNED, c) => (&piece[..piece.len() - 1], Some(c)),
            _ => (piece, None),
        };
        out.extend(body.iter().copied().nfc());
        out.extend(unknown);
    }
    out
}

// ---------------------------------------------------------------------------------------
// ftfy's mojibake heuristic (ftfy.badness)

fn class_bits(c: char) -> u32 {
    // The only ASCII character in a class is the space (a UTF-8 continuation stand-in).
    if c == ' ' {
        return ft::UTF8_CONTINUATION;
    }
    if c.is_ascii() {
        return 0;
    }
    lookup(ft::CHAR_CLASSES, c).unwrap_or(0)
}

/// ftfy's `is_bad`: whether any alternative of `BADNESS_RE` matches somewhere.
fn is_bad(text: &[char]) -> bool {
    let bits: Vec<u32> = text.iter().map(|&c| class_bits(c)).collect();
    (0..text.len()).any(|i| bad_at(text, &bits, i))
}

/// Whether some alternative of ftfy's `BADNESS_RE` matches at `i`, in the regex's order.
fn bad_at(t: &[char], bits: &[u32], i: usize) -> bool {
    use ft::*;
    let c = |k: usize| t.get(i + k).copied();
    let m = |k: usize| bits.get(i + k).copied().unwrap_or(0);
    let is = |k: usize, set: &str| c(k).is_some_and(|ch| set.contains(ch));
    let az = |k: usize| c(k).is_some_and(|ch| ch.is_ascii_lowercase());
    let az_any = |k: usize| c(k).is_some_and(|ch| ch.is_ascii_alphabetic());
    let space = |k: usize| c(k).is_some_and(is_python_space);

    const ACCENTED: u32 = LOWER_ACCENTED | UPPER_ACCENTED;
    const MANY: u32 =
        ACCENTED | BOX | START_PUNCTUATION | END_PUNCTUATION | CURRENCY | NUMERIC | LAW;

    m(0) & C1 != 0
        || (m(0) & (BAD | MANY) != 0 && m(1) & BAD != 0)
        || (az_any(0) && m(1) & (LOWER_COMMON | UPPER_COMMON) != 0 && m(2) & BAD != 0)
        || (m(0) & BAD != 0 && m(1) & MANY != 0)
        || (m(0) & (LOWER_ACCENTED | LOWER_COMMON | BOX | END_PUNCTUATION | CURRENCY | NUMERIC) != 0
            && m(1) & UPPER_ACCENTED != 0)
        || (m(0) & (BOX | END_PUNCTUATION | CURRENCY | NUMERIC) != 0 && m(1) & LOWER_ACCENTED != 0)
        || (m(0) & (LOWER_ACCENTED | BOX | END_PUNCTUATION) != 0 && m(1) & CURRENCY != 0)
        || (space(0) && m(1) & UPPER_ACCENTED != 0 && m(2) & CURRENCY != 0)
        || (m(0) & (UPPER_ACCENTED | BOX) != 0 && m(1) & (NUMERIC | LAW) != 0)
        || (m(0) & (ACCENTED | BOX | CURRENCY | END_PUNCTUATION) != 0
            && m(1) & START_PUNCTUATION != 0
            && m(2) & NUMERIC != 0)
        || (m(0) & (ACCENTED | CURRENCY | NUMERIC | BOX | LAW) != 0
            && m(1) & END_PUNCTUATION != 0
            && m(2) & START_PUNCTUATION != 0)
        || (m(0) & (CURRENCY | NUMERIC | BOX) != 0 && m(1) & START_PUNCTUATION != 0)
        || (az(0) && m(1) & UPPER_ACCENTED != 0 && m(2) & (START_PUNCTUATION | CURRENCY) != 0)
        || (m(0) & BOX != 0 && m(1) & KAOMOJI != 0)
        || (m(0) & (ACCENTED | CURRENCY | NUMERIC | START_PUNCTUATION | END_PUNCTUATION | LAW) != 0
            && m(1) & BOX != 0)
        || (m(0) & BOX != 0 && m(1) & END_PUNCTUATION != 0)
        || (m(0) & ACCENTED != 0
            && m(1) & (START_PUNCTUATION | END_PUNCTUATION) != 0
            && c(2).is_some_and(|ch| in_ranges(py::WORD, ch)))
        // The ligature œ when not followed by an unaccented Latin letter
        || (is(0, "Œœ") && c(1).is_some_and(|ch| !ch.is_ascii_alphabetic()))
        // Degree signs after capital letters
        || (m(0) & UPPER_ACCENTED != 0 && c(1) == Some('°'))
        // Common Windows-1252 2-character mojibake
        || (is(0, "ÂÃÎÐ")
            && (is(1, "€œŠš¢£Ÿž\u{a0}\u{ad}®©°·»–—´")
                || m(1) & (START_PUNCTUATION | END_PUNCTUATION) != 0))
        || (c(0) == Some('×') && is(1, "²³"))
        // Windows-1252 mojibake of Arabic words: four characters
        || (is(0, "ØÙ") && arabic_second(c(1), m(1)) && is(2, "ØÙ") && arabic_second(c(3), m(3)))
        // South Asian 3-character sequences
        || (c(0) == Some('à') && is(1, "²µ¹¼½¾"))
        // MacRoman mojibake
        || (c(0) == Some('√')
            && is(1, "±∂†≠®™´≤≥¥µø"))
        || (c(0) == Some('≈') && is(1, "°¢"))
        || (c(0) == Some('‚')
            && c(1) == Some('Ä')
            && is(2, "ìîïòôúùû†°¢π"))
        || (c(0) == Some('‚') && is(1, "âó") && is(2, "àä°ê"))
        // Windows-1251 mojibake
        || (c(0) == Some('в') && c(1) == Some('Ђ'))
        || (is(0, "ВГРС")
            && (m(1) & (C1 | BAD | START_PUNCTUATION | END_PUNCTUATION | CURRENCY) != 0 || is(1, "°µ"))
            && is(2, "ВГРС"))
        || (t[i..].starts_with(&['Г', 'ў', 'В', 'Ђ', 'В'])
            && c(5).is_some_and(|ch| ch != '\n')
            && c(6).is_some_and(|ch| ch.is_ascii_alphabetic() || ch == ' '))
        // Windows-1252 encodings of 'à' and 'á', and of U+A0 itself
        || (c(0) == Some('Ã') && is(1, "\u{a0}¡"))
        || (az(0) && is(1, "ÃÂ") && c(2) == Some(' '))
        || (az(0) && space(1) && is(2, "ÃÂ") && c(3) == Some(' '))
        || (i == 0 && is(0, "ÃÂ") && c(1) == Some(' '))
        // Â before the very character it encodes
        || ((az(0) || is(0, ".,?!") || m(0) & END_PUNCTUATION != 0)
            && c(1) == Some('Â')
            && (c(2) == Some(' ') || m(2) & (START_PUNCTUATION | END_PUNCTUATION) != 0))
        // Windows-1253 mojibake
        || (c(0) == Some('β') && c(1) == Some('€') && is(2, "™\u{a0}Ά\u{ad}®°"))
        || (is(0, "ΒΓΞΟ")
            && (m(1) & (C1 | BAD | START_PUNCTUATION | END_PUNCTUATION | CURRENCY) != 0 || c(1) == Some('°'))
            && is(2, "ΒΓΞΟ"))
        // Windows-1257 mojibake
        || (c(0) == Some('ā') && c(1) == Some('€'))
}

/// The class after Ø/Ù in the Arabic-mojibake alternative.
fn arabic_second(c: Option<char>, bits: u32) -> bool {
    use ft::*;
    bits & (COMMON | CURRENCY | BAD | NUMERIC | START_PUNCTUATION) != 0
        || c.is_some_and(|ch| "ŸŠ®°µ»".contains(ch))
}

// ---------------------------------------------------------------------------------------
// ftfy's fix_encoding

/// ftfy's `fix_encoding`: one-step fixes until the text stops changing.
fn fix_encoding(mut text: Vec<char>) -> Vec<char> {
    for _ in 0..MAX_ROUNDS {
        let fixed = fix_encoding_one_step(&text);
        if fixed == text {
            break;
        }
        text = fixed;
    }
    text
}

/// ftfy's `_fix_encoding_one_step_and_explain` with the default configuration.
fn fix_encoding_one_step(text: &[char]) -> Vec<char> {
    if text.is_empty() || text.iter().all(|c| c.is_ascii()) || !is_bad(text) {
        return text.to_vec();
    }
    let mut latin1_possible = false;
    for (k, charmap) in ft::CHARMAP_ENCODINGS.iter().enumerate() {
        let Some(mut bytes) = encode(text, charmap) else {
            continue;
        };
        if k == 0 {
            latin1_possible = true;
        }
        if charmap.name != "macroman" && find_altered_utf8(&bytes, 0).is_some() {
            bytes = restore_byte_a0(&bytes);
        }
        if charmap.sloppy {
            bytes = replace_lossy_sequences(&bytes);
        }
        if let Some(fixed) = decode_utf8_variants(&bytes) {
            return fixed;
        }
    }
    if utf8_detector_search(text).is_some() {
        let fixed = decode_inconsistent_utf8(text);
        if fixed != text {
            return fixed;
        }
    }
    // ftfy asks whether "windows-1252" was a possible encoding, but its list only ever
    // holds "sloppy-windows-1252", so Latin-1 text is always reread as Windows-1252.
    if latin1_possible {
        if let Some(fixed) = latin1_as_windows_1252(text) {
            if fixed != text {
                return fixed;
            }
        }
    }
    if text.iter().any(|&c| is_c1(c)) {
        return fix_c1_controls(text);
    }
    text.to_vec()
}

fn is_c1(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c)
}

/// `text.encode(charmap)`, or `None` when some character is not in it.
fn encode(text: &[char], charmap: &Charmap) -> Option<Vec<u8>> {
    text.iter()
        .map(|&c| {
            let cp = c as u32;
            if cp < 0x80 && cp != 0x1A {
                Some(cp as u8)
            } else {
                lookup(charmap.encode, c)
            }
        })
        .collect()
}

/// `text.encode("latin-1").decode("windows-1252")` (strict: `None` for its five undefined
/// bytes).
fn latin1_as_windows_1252(text: &[char]) -> Option<Vec<char>> {
    let windows_1252 = &ft::CHARMAP_ENCODINGS[1];
    text.iter()
        .map(|&c| {
            let cp = c as u32;
            if !(0x80..=0x9f).contains(&cp) {
                Some(c)
            } else if ft::WINDOWS_1252_UNDEFINED.contains(&(cp as u8)) {
                None
            } else {
                char::from_u32(windows_1252.decode[cp as usize])
            }
        })
        .collect()
}

/// ftfy's `fix_c1_controls`: C1 controls read as sloppy Windows-1252.
fn fix_c1_controls(text: &[char]) -> Vec<char> {
    let windows_1252 = &ft::CHARMAP_ENCODINGS[1];
    text.iter()
        .map(|&c| {
            if is_c1(c) {
                char::from_u32(windows_1252.decode[c as usize]).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

/// A match of ftfy's `ALTERED_UTF8_RE` (UTF-8 with an 0xA0 byte turned into a space) at
/// or after `from`: `(start, end)`.
fn find_altered_utf8(b: &[u8], from: usize) -> Option<(usize, usize)> {
    (from..b.len()).find_map(|i| altered_utf8_at(b, i).map(|len| (i, i + len)))
}

fn altered_utf8_at(b: &[u8], i: usize) -> Option<usize> {
    let g = |k: usize| b.get(i + k).copied();
    let sp = |k: usize| g(k) == Some(b' ');
    let cont = |k: usize| matches!(g(k), Some(0x80..=0xbf));
    let cont_no_85_a0 = |k: usize| matches!(g(k), Some(0x80..=0x84 | 0x86..=0x9f | 0xa1..=0xbf));
    let lead = g(0)?;
    if matches!(lead, 0xc2 | 0xc3 | 0xc5 | 0xce | 0xd0 | 0xd9) && sp(1) {
        return Some(2);
    }
    if matches!(lead, 0xe2 | 0xe3) && sp(1) && cont_no_85_a0(2) {
        return Some(3);
    }
    if matches!(lead, 0xe0..=0xe3) && cont_no_85_a0(1) && sp(2) {
        return Some(3);
    }
    if lead == 0xf0
        && ((sp(1) && cont(2) && cont(3))
            || (cont(1) && sp(2) && cont(3))
            || (cont(1) && cont(2) && sp(3)))
    {
        return Some(4);
    }
    None
}

/// ftfy's `restore_byte_a0`.
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    // A_GRAVE_WORD_RE: b"\xc3 (?! |quele|quela|quilo|s )" -> b"\xc3\xa0 "
    let mut grave = Vec::with_capacity(bytes.len() + 4);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xc3 && bytes.get(i + 1) == Some(&b' ') {
            let rest = &bytes[i + 2..];
            let excepted = [&b" "[..], b"quele", b"quela", b"quilo", b"s "]
                .iter()
                .any(|word| rest.starts_with(word));
            if !excepted {
                grave.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        grave.push(bytes[i]);
        i += 1;
    }
    let mut out = Vec::with_capacity(grave.len());
    let mut pos = 0;
    while let Some((start, end)) = find_altered_utf8(&grave, pos) {
        out.extend_from_slice(&grave[pos..start]);
        out.extend(
            grave[start..end]
                .iter()
                .map(|&b| if b == b' ' { 0xa0 } else { b }),
        );
        pos = end;
    }
    out.extend_from_slice(&grave[pos..]);
    out
}

/// ftfy's `replace_lossy_sequences`: UTF-8 sequences with bytes lost to 0x1A (or one `?`)
/// become U+FFFD.
fn replace_lossy_sequences(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match lossy_utf8_at(bytes, i) {
            Some(len) => {
                out.extend_from_slice("\u{fffd}".as_bytes());
                i += len;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn lossy_utf8_at(b: &[u8], i: usize) -> Option<usize> {
    let g = |k: usize| b.get(i + k).copied();
    let lost = |k: usize| g(k) == Some(0x1a);
    let lost_or_q = |k: usize| matches!(g(k), Some(0x1a | b'?'));
    let lost_or_cont = |k: usize| matches!(g(k), Some(0x1a | 0x80..=0xbf));
    let any = |k: usize| matches!(g(k), Some(0x1a | b'?' | 0x80..=0xbf));
    let in_range = |k: usize, lo: u8, hi: u8| g(k).is_some_and(|x| (lo..=hi).contains(&x));
    let lead = g(0)?;
    if (0xc2..=0xdf).contains(&lead) && lost(1) {
        return Some(2);
    }
    if (0xc2..=0xc3).contains(&lead) && g(1) == Some(b'?') {
        return Some(2);
    }
    if lead == 0xed
        && in_range(1, 0xa0, 0xaf)
        && g(3) == Some(0xed)
        && in_range(4, 0xb0, 0xbf)
        && ((lost_or_q(2) && any(5)) || (any(2) && lost_or_q(5)))
    {
        return Some(6);
    }
    if (0xe0..=0xef).contains(&lead)
        && ((lost_or_q(1) && lost_or_cont(2)) || (lost_or_cont(1) && lost_or_q(2)))
    {
        return Some(3);
    }
    if (0xf0..=0xf4).contains(&lead)
        && ((lost_or_q(1) && lost_or_cont(2) && lost_or_cont(3))
            || (lost_or_cont(1) && lost_or_q(2) && lost_or_cont(3))
            || (lost_or_cont(1) && lost_or_cont(2) && lost_or_q(3)))
    {
        return Some(4);
    }
    if lead == 0x1a {
        return Some(1);
    }
    None
}

/// ftfy's `utf-8-variants` codec, strict: UTF-8, plus CESU-8 surrogate pairs and Java's
/// `C0 80` for U+0000. `None` where Python raises `UnicodeDecodeError`.
fn decode_utf8_variants(b: &[u8]) -> Option<Vec<char>> {
    let n = b.len();
    let cont = |x: u8| (0x80..=0xbf).contains(&x);
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let lead = b[i];
        if lead < 0x80 {
            out.push(lead as char);
            i += 1;
            continue;
        }
        // The codec finds these with a bytes regex whose `$` also matches before a final
        // b"\n", so a final "\xc0\n" decodes as U+0000 and so does the newline with it.
        let at_end_newline = |k: usize| b[k] == b'\n' && k + 1 == n;
        if lead == 0xc0 {
            if i + 1 < n && (b[i + 1] == 0x80 || at_end_newline(i + 1)) {
                out.push('\0');
                i += 2;
                continue;
            }
            return None;
        }
        if lead == 0xed
            && i + 6 <= n
            && (0xa0..=0xaf).contains(&b[i + 1])
            && cont(b[i + 2])
            && b[i + 3] == 0xed
            && (0xb0..=0xbf).contains(&b[i + 4])
            && (cont(b[i + 5]) || at_end_newline(i + 5))
        {
            let cp = (((b[i + 1] & 0x0f) as u32) << 16)
                + (((b[i + 2] & 0x3f) as u32) << 10)
                + (((b[i + 4] & 0x0f) as u32) << 6)
                + ((b[i + 5] & 0x3f) as u32)
                + 0x10000;
            out.push(char::from_u32(cp)?);
            i += 6;
            continue;
        }
        let (len, second_lo, second_hi) = match lead {
            0xc2..=0xdf => (2, 0x80, 0xbf),
            0xe0 => (3, 0xa0, 0xbf),
            0xe1..=0xec | 0xee..=0xef => (3, 0x80, 0xbf),
            0xed => (3, 0x80, 0x9f),
            0xf0 => (4, 0x90, 0xbf),
            0xf1..=0xf3 => (4, 0x80, 0xbf),
            0xf4 => (4, 0x80, 0x8f),
            _ => return None,
        };
        if i + len > n || !(second_lo..=second_hi).contains(&b[i + 1]) {
            return None;
        }
        if !b[i + 2..i + len].iter().all(|&x| cont(x)) {
            return None;
        }
        let s = std::str::from_utf8(&b[i..i + len]).ok()?;
        out.extend(s.chars());
        i += len;
    }
    Some(out)
}

/// A match of ftfy's `UTF8_DETECTOR_RE` at `i`: its end. The regex is
/// `(?<![strict continuation])([first of 2][continuation] | [first of 3][continuation]{2}
/// | [first of 4][continuation]{3})+`.
fn utf8_detector_at(bits: &[u32], i: usize) -> Option<usize> {
    use ft::*;
    if i > 0 && bits[i - 1] & UTF8_CONTINUATION_STRICT != 0 {
        return None;
    }
    let cont = |k: usize, count: usize| {
        (k..k + count).all(|j| bits.get(j).is_some_and(|&m| m & UTF8_CONTINUATION != 0))
    };
    let mut j = i;
    while j < bits.len() {
        let lead = bits[j];
        let len = if lead & UTF8_FIRST_OF_2 != 0 && cont(j + 1, 1) {
            2
        } else if lead & UTF8_FIRST_OF_3 != 0 && cont(j + 1, 2) {
            3
        } else if lead & UTF8_FIRST_OF_4 != 0 && cont(j + 1, 3) {
            4
        } else {
            break;
        };
        j += len;
    }
    (j > i).then_some(j)
}

fn utf8_detector_search(text: &[char]) -> Option<(usize, usize)> {
    let bits: Vec<u32> = text.iter().map(|&c| class_bits(c)).collect();
    (0..text.len()).find_map(|i| utf8_detector_at(&bits, i).map(|end| (i, end)))
}

/// ftfy's `decode_inconsistent_utf8`: each UTF-8-looking run that looks bad on its own is
/// fixed on its own.
fn decode_inconsistent_utf8(text: &[char]) -> Vec<char> {
    let bits: Vec<u32> = text.iter().map(|&c| class_bits(c)).collect();
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if let Some(end) = utf8_detector_at(&bits, i) {
            let run = &text[i..end];
            if run.len() < text.len() && is_bad(run) {
                out.extend(fix_encoding(run.to_vec()));
            } else {
                out.extend_from_slice(run);
            }
            i = end;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn fixes_common_mojibake() {
        assert_eq!(ftfy_fix_text("caf\u{c3}\u{a9}"), "café");
        assert_eq!(
            ftfy_fix_text("\u{e2}\u{20ac}\u{153}quoted\u{e2}\u{20ac}\u{9d}"),
            "\"quoted\""
        );
        assert_eq!(ftfy_fix_text("\u{c3} la mode"), "à la mode");
        assert_eq!(
            ftfy_fix_text("\u{e2}\u{153}\u{201d} No problems"),
            "✔ No problems"
        );
        assert_eq!(
            ftfy_fix_text("\u{e2}\u{20ac}\u{153} like this \u{e2}\u{20ac}\u{fffd}"),
            "\" like this \u{fffd}"
        );
        assert_eq!(
            ftfy_fix_text("&macr;\\_(\u{e3}\u{83}\u{84})_/&macr;"),
            "¯\\_(ツ)_/¯"
        );
    }

    #[test]
    fn leaves_legitimate_text_alone() {
        for text in [
            "café",
            "naïve résumé",
            "Ω ≈ 3.14",
            "日本語のテキスト",
            "Straße",
            "¿Qué?",
        ] {
            assert_eq!(ftfy_fix_text(text), text);
        }
    }

    #[test]
    fn ftfy_fixers() {
        assert_eq!(
            ftfy_fix_text("Broken text&hellip; it&#x2019;s ﬂubberiﬁc!"),
            "Broken text… it's flubberific!"
        );
        assert_eq!(ftfy_fix_text("ＬＯＵＤ\u{3000}ＮＯＩＳＥＳ"), "LOUD NOISES");
        assert_eq!(
            ftfy_fix_text("P&EACUTE;REZ &ntilde; &nTILDE;"),
            "PÉREZ ñ &nTILDE;"
        );
        assert_eq!(ftfy_fix_text("\x1b[36;44mblue\x1b[0m"), "blue");
        assert_eq!(ftfy_fix_text("a\r\nb\rc\u{2028}d"), "a\nb\nc\nd");
        assert_eq!(ftfy_fix_text("a\u{0}b\u{feff}c\u{7f}"), "abc");
        assert_eq!(ftfy_fix_text("e\u{301}"), "é");
        // With a '<' the line is HTML: its entities stay, and so do the next lines'.
        assert_eq!(ftfy_fix_text("<b>&amp;</b>\n&amp;"), "<b>&amp;</b>\n&amp;");
        assert_eq!(ftfy_fix_text("&amp;\n<b>&amp;</b>"), "&\n<b>&amp;</b>");
    }

    #[test]
    fn html_unescape_matches_python() {
        assert_eq!(html_unescape("&amp;amp;"), "&amp;");
        assert_eq!(html_unescape("&copy 2024 &notit; &ampx"), "© 2024 ¬it; &x");
        assert_eq!(
            html_unescape("&#65;&#x42;&#X43&#0;&#128;&#xD800;&#x110000;&#1;"),
            "ABC\u{fffd}€\u{fffd}\u{fffd}"
        );
        assert_eq!(
            html_unescape("&unknown; & &; &#; &#x;"),
            "&unknown; & &; &#; &#x;"
        );
        assert_eq!(html_unescape("&#99999999999999999999999;"), "\u{fffd}");
    }

    #[test]
    fn python_lower_rules() {
        assert_eq!(python_lower("ΟΔΟΣ ΣΑΣ Σ"), "οδος σας σ");
        assert_eq!(python_lower("İstanbul"), "i\u{307}stanbul");
        assert_eq!(python_lower("ÀÉÎ ǅ"), "àéî ǆ");
    }

    #[test]
    fn whitespace_is_pythons() {
        assert_eq!(
            whitespace_clean(" a\u{1c}b\u{85}c\u{a0}d\u{3000}e\u{200b}f "),
            "a b c d e\u{200b}f"
        );
    }

    #[test]
    fn clip_clean_pipeline() {
        assert_eq!(
            clip_clean("  A Photo of a CAF\u{c3}\u{89} &amp;amp; ﬁsh  "),
            "a photo of a café & fish"
        );
        assert_eq!(clip_clean(""), "");
        assert_eq!(clip_clean("\n\t "), "");
    }

    #[test]
    fn utf8_variants_decoder() {
        assert_eq!(decode_utf8_variants(b"a\xc0\x80b"), Some(chars("a\0b")));
        assert_eq!(
            decode_utf8_variants(b"\xed\xa0\xbd\xed\xb8\x80"),
            Some(chars("😀"))
        );
        assert_eq!(decode_utf8_variants(b"\xed\xa0\x80"), None);
        assert_eq!(decode_utf8_variants(b"x\xc0\n"), Some(chars("x\0")));
        assert_eq!(decode_utf8_variants(b"\xe2\x82"), None);
    }

    #[test]
    fn tables_are_sorted() {
        assert!(HTML5_ENTITIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(ft::UPPER_ENTITIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(ft::CHAR_CLASSES.windows(2).all(|w| w[0].0 < w[1].0));
        for charmap in &ft::CHARMAP_ENCODINGS {
            assert!(
                charmap.encode.windows(2).all(|w| w[0].0 < w[1].0),
                "{}",
                charmap.name
            );
        }
        for table in [ft::WIDTH_MAP, ft::LIGATURES, ft::CONTROL_CHARS, py::LOWER] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
        for table in [
            py::CASE_IGNORABLE,
            py::CASED,
            py::WHITESPACE,
            py::WORD,
            py::DECIMAL,
            py::UNASSIGNED,
        ] {
            assert!(table.windows(2).all(|w| w[0].1 < w[1].0));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text() {
        // A small deterministic generator over bytes, decoded lossily, plus mojibake-prone
        // characters spliced in.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let specials = [
            "Ã", "Â", "â€", "\u{1a}", "&", "&#", "<", "\x1b[", "Ð", "ï»¿", "\r", "\n", " ", "Σ",
        ];
        for _ in 0..3000 {
            let len = (next() % 40) as usize;
            let mut bytes = Vec::new();
            for _ in 0..len {
                let r = next();
                if r % 3 == 0 {
                    bytes
                        .extend_from_slice(specials[(r >> 8) as usize % specials.len()].as_bytes());
                } else {
                    bytes.push((r >> 16) as u8);
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = clip_clean(&text);
            let latin1: String = bytes.iter().map(|&b| b as char).collect();
            let _ = clip_clean(&latin1);
        }
    }
}
