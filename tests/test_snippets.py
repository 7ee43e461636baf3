"""Snippets are plain text plus highlight offsets, never HTML."""
from storage.snippets import END, START, around_terms, from_markers


def test_snippets_from_markers_gives_offsets():
    text, spans = from_markers(f"a {START}big{END} <b>cat</b> {START}sat{END}")
    assert text == "a big <b>cat</b> sat"
    assert [text[a:b] for a, b in spans] == ["big", "sat"]


def test_snippets_around_terms_windows_the_first_match():
    words = [f"w{i}" for i in range(100)]
    words[60] = "Walrus"
    text = " ".join(words)
    snippet, spans = around_terms(text, ["walrus"])
    assert snippet.startswith("…") and snippet.endswith("…")
    assert [snippet[a:b] for a, b in spans] == ["Walrus"]
    assert len(snippet.split()) <= 15


def test_snippets_around_terms_matches_word_starts_only():
    snippet, spans = around_terms("running runners overrun", ["run"])
    assert [snippet[a:b] for a, b in spans] == ["running", "runners"]


def test_snippets_around_terms_without_match_clips_text():
    snippet, spans = around_terms(" ".join(["word"] * 40), ["zebra"])
    assert spans == [] and snippet.endswith("…")
    assert around_terms("short", []) == ("short", [])
