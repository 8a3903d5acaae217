"""Zero-party preferences without I/O: the catalog's checks, the event a change publishes, where a
preference is used, and the page section."""

from __future__ import annotations

import pytest

from services.consent.preference.feelings import ANSWERS
from services.consent.preference.messages import MESSAGES
from services.consent.preference.zero_party import preference_event, used_by
from services.consent.preference.zero_party_page import render_feeling, render_preferences
from shared.catalog import PreferenceChoiceError, load_preference_catalog
from shared.events import utcnow

CATALOG = load_preference_catalog()
INTERESTS, FREQUENCY = CATALOG.get("interests"), CATALOG.get("frequency")


def test_values_are_checked_against_the_catalog_and_stored_in_catalog_order() -> None:
    assert INTERESTS is not None and FREQUENCY is not None
    assert INTERESTS.check(["music", "books", "music"]) == ["books", "music"]
    assert FREQUENCY.check("weekly") == "weekly"
    for key, bad in (
        (INTERESTS, ["books", "cars"]),
        (INTERESTS, []),
        (FREQUENCY, ["weekly"]),
        (FREQUENCY, "daily"),
    ):
        with pytest.raises(PreferenceChoiceError):
            key.check(bad)


def test_a_change_is_a_profile_update_of_the_preference_center_and_a_removal_a_null() -> None:
    assert INTERESTS is not None
    event = preference_event("c-1", INTERESTS, ["books"], utcnow())
    assert (event.type, event.source, event.attributes) == (
        "profile_update", "preference-center", {"pref.interests": ["books"]},
    )  # fmt: skip
    assert preference_event("c-1", INTERESTS, None, utcnow()).attributes == {"pref.interests": None}


def test_a_preference_is_used_by_the_segments_whose_rule_reads_it() -> None:
    assert INTERESTS is not None
    definitions = [
        {"name": "Readers", "features": ["profile.pref.interests", "total_spend"]},
        {"name": "Spenders", "features": ["total_spend"]},
        {"name": "Model", "features": []},
    ]
    assert used_by(INTERESTS, definitions) == ["Readers"]


def test_the_section_shows_what_was_stated_and_where_it_is_used() -> None:
    html = render_preferences("de", CATALOG, {"interests": ["books"]}, {"interests": ["Leser"]})
    de = MESSAGES["de"]
    assert '<form class="stated" data-preference="interests" data-stated="true">' in html
    assert 'type="checkbox" name="interests" value="books" checked> Bücher' in html
    assert 'type="radio" name="frequency" value="weekly">' in html
    assert de["used_by"].format(segments="Leser") in html and de["used_by_none"] in html
    for key in CATALOG.preferences:  # each described in the page's language, the fieldset pointing at it
        about = f'id="pref-about-{key.id}">{de[f"about.pref.{key.id}"]}</p>'
        assert f'<fieldset aria-describedby="pref-about-{key.id}">' in html and about in html
    unknown = render_preferences("en", CATALOG, {}, None)
    assert MESSAGES["en"]["used_by_unavailable"] in unknown and 'data-stated="true"' not in unknown


def test_the_data_use_question_offers_every_answer_until_answered() -> None:
    asked = render_feeling("de", ANSWERS, answered=False)
    assert all(f'value="{a}"> {MESSAGES["de"][f"feeling.{a}"]}' in asked for a in ANSWERS)
    thanked = render_feeling("en", ANSWERS, answered=True)
    assert 'data-answered="true"' in thanked and "<form" not in thanked
    assert MESSAGES["en"]["feeling_thanks"] in thanked
