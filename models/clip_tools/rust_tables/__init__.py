"""Generators of the Rust tables in src/text/, each read out of the installed Python (and
ftfy) rather than retyped; run from the crate root, each writes one file to stdout:

    python3 -m clip_tools.rust_tables.ftfy_tables > src/text/ftfy_tables.rs
    python3 -m clip_tools.rust_tables.html_entities > src/text/html_entities.rs
    python3 -m clip_tools.rust_tables.python_str_tables > src/text/python_str_tables.rs
"""


def rust_str(s: str) -> str:
    """`s` as a Rust string literal: printable ASCII as is, `"` and `\\` escaped, every
    other character as `\\u{..}`."""
    out = []
    for ch in s:
        cp = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= cp < 0x7F:
            out.append(ch)
        else:
            out.append("\\u{%x}" % cp)
    return '"' + "".join(out) + '"'
