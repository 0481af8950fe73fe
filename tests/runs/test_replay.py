"""Resuming after a crash: regenerated text streams only past what was recorded."""

from runstep.runs.recorder import Replay, replayed


def _feed(replay: Replay | None, pieces: list[str]) -> tuple[list[str], bool]:
    out, diverged_any = [], False
    for piece in pieces:
        text, replay, diverged = replayed(replay, piece, "test")
        diverged_any |= diverged
        out.append(text)
    return out, diverged_any


def test_identical_regeneration_emits_only_the_unrecorded_tail() -> None:
    out, diverged = _feed(Replay("Hello wor"), ["Hel", "lo ", "world", "!"])
    assert out == ["", "", "ld", "!"] and not diverged
    assert "".join(out) == "ld!"


def test_regeneration_ending_exactly_at_the_recorded_text_emits_nothing() -> None:
    out, diverged = _feed(Replay("abc"), ["a", "bc", "d"])
    assert out == ["", "", "d"] and not diverged


def test_divergence_replaces_the_recorded_text_with_the_regeneration() -> None:
    out, diverged = _feed(Replay("Hello"), ["Help", " me"])
    assert diverged
    assert out == ["Help", " me"]


def test_without_a_replay_text_passes_through() -> None:
    assert replayed(None, "x", "test") == ("x", None, False)


def test_empty_recorded_text_is_done_immediately() -> None:
    text, replay, diverged = replayed(Replay(""), "abc", "test")
    assert (text, replay, diverged) == ("abc", None, False)
