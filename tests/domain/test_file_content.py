"""A file's normalised content: every copy of a file re-saved otherwise is the same content,
and different contents stay different (issue #10; no database).

A copy's bytes differ from the file's when an editor, a mail client or a spreadsheet re-saves
it: other line endings (LF, CRLF, CR, or a mix), a final newline or blank final lines added or
dropped, a UTF-8 byte order mark added or dropped. Its content claim (FileContentClaim) is
named by what is left, so the same day's income is imported once.
"""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from domain.imports import UTF8_BOM, FileContentClaim, content_sha256, normalised_content

ENDINGS = ["\n", "\r\n", "\r"]
# A line's text: anything but line endings and the byte order mark (blank ones included).
LINE = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\x0b\x0c\ufeff", blacklist_categories=("Cs",)),
    max_size=12,
) | st.sampled_from(["", " ", "\t", "  \t "])
LINES = st.lists(LINE, min_size=1, max_size=8)
BLANK = st.sampled_from(["", " ", "\t", "   "])


def canonical(lines: list[str]) -> bytes:
    """The content as its normalised form is meant to be: LF between the lines, no blank
    (spaces and tabs only) lines at the end, no final newline, no byte order mark."""
    kept = list(lines)
    while kept and not kept[-1].strip(" \t"):
        kept.pop()
    return "\n".join(kept).encode()


@st.composite
def resaved(draw: st.DrawFn, lines: list[str]) -> bytes:
    """The lines saved as some program might: each line ending its own, a final ending or
    not, blank final lines or not, a byte order mark or not."""
    text = ""

    def end(line: str) -> str:
        # A CR then an empty line's LF is one CRLF to every reader: not two line endings.
        after_cr = text.endswith("\r") and not line
        return line + draw(st.sampled_from(ENDINGS[1:] if after_cr else ENDINGS))

    for line in lines[:-1]:
        text += end(line)
    text += lines[-1]
    if draw(st.booleans()):
        text += end("")
        for blank in draw(st.lists(BLANK, max_size=3)):
            text += end(blank)
    start = UTF8_BOM if draw(st.booleans()) else b""
    return start + text.encode()


@given(st.data(), LINES)
def test_any_file_and_its_resaved_copies_normalise_equal(data, lines) -> None:
    first, copy = data.draw(resaved(lines)), data.draw(resaved(lines))
    assert normalised_content(first) == normalised_content(copy) == canonical(lines)
    claim = FileContentClaim.create_id
    assert claim(content_sha256(first)) == claim(content_sha256(copy))


@given(st.data(), LINES, LINES)
def test_files_of_different_contents_do_not(data, lines, others) -> None:
    assume(canonical(lines) != canonical(others))
    first, other = data.draw(resaved(lines)), data.draw(resaved(others))
    assert normalised_content(first) != normalised_content(other)
    assert content_sha256(first) != content_sha256(other)


def test_what_normalising_keeps() -> None:
    """A line's own spaces, blank lines between lines and other whitespace are content: a
    fixed-width line's columns, a CSV's rows."""
    assert normalised_content(b"a  \r\n \r\n") == b"a  "
    assert normalised_content(b"a\n\nb\n") != normalised_content(b"a\nb\n")
    assert normalised_content(b" a\n") != normalised_content(b"a\n")
    assert normalised_content(b"a\xa0\n") != normalised_content(b"a\n")
    assert normalised_content(UTF8_BOM + UTF8_BOM + b"a") != normalised_content(b"a")
    assert normalised_content(b"\r\n \n\t") == normalised_content(b"") == b""
