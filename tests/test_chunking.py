"""Chunking a file: token bounds, natural boundaries, overlap, nothing lost."""
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import utils
from chunking import chunk_text


def _covers(text: str, chunks) -> bool:
    """Every chunk is the text at its offset, each starts no later than the previous one ends
    (no gap) and after the previous one starts (progress), and the last one reaches the end."""
    end = 0
    for before, chunk in zip([None] + chunks, chunks, strict=False):
        if text[chunk.start:chunk.start + len(chunk.text)] != chunk.text or chunk.start > end:
            return False
        if before is not None and chunk.start <= before.start:
            return False
        end = chunk.start + len(chunk.text)
    return end == len(text)


def test_chunks_respect_the_token_limit_and_cover_the_text():
    text = "\n\n".join(f"Paragraph {i}. " + "Some words here. " * (i % 40 + 1) for i in range(200))
    chunks = chunk_text(text, 300, 50)
    assert len(chunks) > 5
    assert all(utils.count_tokens(chunk.text) <= 300 for chunk in chunks)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert _covers(text, chunks)


def test_chunks_cut_at_paragraph_boundaries_when_possible():
    paragraphs = [f"Topic {i}: " + "detail " * 60 for i in range(30)]
    chunks = chunk_text("\n\n".join(paragraphs), 400, 0)
    for chunk in chunks[:-1]:
        assert chunk.text.endswith("\n\n") or chunk.text.endswith("\n")
    assert "".join(chunk.text for chunk in chunks) == "\n\n".join(paragraphs)  # no overlap: exact partition


def test_neighbouring_chunks_overlap():
    lines = [f"Line number {i} says something." for i in range(400)]
    chunks = chunk_text("\n".join(lines), 200, 40)
    for before, after in itertools.pairwise(chunks):
        last_line = before.text.rstrip("\n").rsplit("\n", 1)[-1]
        assert last_line in after.text  # the end of one chunk starts the next


@pytest.mark.parametrize("text", ["x" * 30000, "word " * 20000, ("é" * 5000 + "\n") * 3, "一二三四五" * 3000],
                         ids=["no-spaces", "words", "accents", "cjk"])
def test_text_without_good_boundaries_still_fits(text):
    chunks = chunk_text(text, 100, 10)
    assert all(utils.count_tokens(chunk.text) <= 100 for chunk in chunks)
    assert _covers(text, chunks)


def test_small_text_is_one_chunk_and_empty_text_none():
    assert [c.text for c in chunk_text("Just a line.", 1000, 100)] == ["Just a line."]
    assert chunk_text("", 1000, 100) == []


def test_overlap_is_capped_at_half_a_chunk():
    chunks = chunk_text("\n".join(f"line {i}" for i in range(500)), 50, 500)
    assert all(utils.count_tokens(chunk.text) <= 50 for chunk in chunks)


@settings(max_examples=60, deadline=None)
@given(text=st.lists(st.sampled_from(list("ab .\n\t!?é中") + ["word ", "\n\n", "x" * 300]), max_size=600).map("".join),
       size=st.integers(8, 400), overlap=st.integers(0, 200))
def test_property_chunks_fit_and_lose_nothing(text, size, overlap):
    chunks = chunk_text(text, size, overlap)
    assert all(utils.count_tokens(chunk.text) <= size for chunk in chunks)
    assert _covers(text, chunks)
