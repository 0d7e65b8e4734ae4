"""Crisis triage: a maintained phrase list, English and Spanish, negation-naive on purpose."""

from __future__ import annotations

import pytest

from service.triage import CRISIS_PHRASES, crisis_phrases, free_text, is_urgent


@pytest.mark.parametrize(
    "text",
    [
        "I think I want to kill myself",
        "She is suicidal and won't talk to us",
        "he OVERDOSED last night",
        "we had to use Narcan on him",
        "I've been cutting myself again",
        "He's not breathing right",
        "I don't want to live like this",
        "I don’t want to live anymore",  # curly apostrophe
        "mi hijo tuvo una sobredosis",
        "Quiero morir",
        "ya no quiero vivir así",
        "está en peligro",
        "SOBREDÓSIS",  # accents and case folded
        "my friend is in danger",
    ],
)
def test_crisis_messages_are_urgent(text: str) -> None:
    assert is_urgent(text), text


@pytest.mark.parametrize(
    "text",
    [
        "I would like information about outpatient programs",
        "What insurance do you take?",
        "My dad drinks too much and we want to help him",
        "Looking for a program for my son, he is 19",
        "Can someone call me after 5pm?",
        "We need to kill time before the appointment",
        "the overdraft on my account",
        "Busco información sobre tratamiento para mi esposo",
    ],
)
def test_ordinary_messages_are_not_urgent(text: str) -> None:
    assert not is_urgent(text), text


def test_negation_naive_by_design() -> None:
    # A safety net: staff decide. A false alarm costs a prompt call; a miss could cost a life.
    assert is_urgent("I am not suicidal, just need help")


def test_phrases_found_in_order_and_every_free_text_field_counts() -> None:
    person = {"message": "overdose", "best_time": "now, he has a gun", "extras": {"note": "narcan"}}
    assert crisis_phrases(*free_text(person)) == ["overdose", "has a gun", "narcan"]


def test_every_phrase_matches_itself() -> None:
    for phrase in CRISIS_PHRASES:
        assert crisis_phrases(f"... {phrase} ...") == [phrase], phrase
