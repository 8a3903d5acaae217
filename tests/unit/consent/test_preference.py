"""Preference links (opaque, signed, expiring), the string catalog and the page's escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from cryptography.fernet import Fernet

from services.consent.preference.links import LinkClaims, PreferenceLinkError, PreferenceLinks
from services.consent.preference.messages import LANGUAGES, MESSAGES, language
from services.consent.preference.page import purpose_title, render_page
from services.consent.preference.reach import RECENT, choice_reach
from services.consent.preference.reach_page import render_choices
from services.consent.preference.reasons import segment_reason
from shared.catalog import PurposeCatalog, load_catalog, load_preference_catalog
from shared.events import PurposeState

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
CLAIMS = LinkClaims("c-1042", 3, "GDPR", "2026-03", int((NOW + timedelta(hours=1)).timestamp()))


def test_a_link_opens_to_its_claims_and_shows_no_customer_id() -> None:
    links = PreferenceLinks(Fernet.generate_key())
    token = links.issue(CLAIMS)
    assert "c-1042" not in token and "1042" not in token
    assert links.open(token, NOW) == CLAIMS


def test_an_expired_link_is_refused_as_expired() -> None:
    links = PreferenceLinks(Fernet.generate_key())
    with pytest.raises(PreferenceLinkError) as refused:
        links.open(links.issue(CLAIMS), NOW + timedelta(hours=1))
    assert refused.value.reason == "expired"


@pytest.mark.parametrize("position", [0, 20, 60, -5])
def test_a_changed_or_foreign_link_is_refused_as_invalid(position: int) -> None:
    links = PreferenceLinks(Fernet.generate_key())
    token = links.issue(CLAIMS)
    changed = token[:position] + ("A" if token[position] != "A" else "B") + token[position:][1:]
    foreign = PreferenceLinks(Fernet.generate_key()).issue(CLAIMS)
    for bad in (changed, foreign, "", "not-a-token"):
        with pytest.raises(PreferenceLinkError) as refused:
            links.open(bad, NOW)
        assert refused.value.reason == "invalid"


def test_every_language_has_every_string() -> None:
    english = set(MESSAGES["en"])
    missing = {lang: set(strings) ^ english for lang, strings in MESSAGES.items()}
    assert missing == dict.fromkeys(MESSAGES, set())


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_shipped_purpose_and_preference_is_worded_in_every_language(lang: str) -> None:
    """The page's words for the shipped catalogs, so no one is shown an English description (or
    an id) on a page in another language."""
    needed = {f"{kind}.{p.id}" for p in load_catalog().purposes for kind in ("purpose", "about.purpose")}
    for key in load_preference_catalog().preferences:
        needed |= {f"pref.{key.id}", f"about.pref.{key.id}", *(f"pref.{key.id}.{v}" for v in key.values)}
    assert needed - {k for k, words in MESSAGES[lang].items() if words.strip()} == set()


def test_purposes_are_described_in_the_pages_language() -> None:
    catalog = load_catalog()
    states = {p.id: PurposeState(status="denied", effective=False) for p in catalog.purposes}
    german = render_page("de", catalog, states, "/preferences/t", False, segments=[], currency="EUR")
    english = render_page("en", catalog, states, "/preferences/t", False, segments=[], currency="EUR")
    for purpose in catalog.purposes:
        assert MESSAGES["de"][f"about.purpose.{purpose.id}"] in german
        assert MESSAGES["en"][f"about.purpose.{purpose.id}"] in english
        assert purpose.description not in german  # the catalog's own (English) words


@pytest.mark.parametrize(
    ("header", "expected"),
    [("de-DE,de;q=0.9,en;q=0.8", "de"), ("fr-FR,en;q=0.5", "en"), ("fr", "en"), (None, "en")],
)
def test_the_page_speaks_the_first_shipped_language_asked_for(header: str | None, expected: str) -> None:
    assert language(header) == expected


def test_catalog_text_is_escaped_and_every_purpose_shown_with_its_state() -> None:
    catalog = PurposeCatalog.model_validate(
        {
            "purposes": [
                {"id": "a_b", "description": "<script>x</script>", "lawful_basis": "consent",
                 "defaults": {}, "retention_days": 30},
                {"id": "c_d", "description": "plain", "lawful_basis": "custom basis",
                 "defaults": {}, "retention_days": 30, "sale_or_share": True},
            ]
        }
    )  # fmt: skip
    states = {
        "a_b": PurposeState(status="granted", effective=True),
        "c_d": PurposeState(status="denied", effective=False),
    }
    html = render_page(
        "en", catalog, states, "/preferences/t", gpc_recorded=False, segments=None, currency="EUR"
    )
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert 'data-purpose="a_b" data-status="granted"' in html
    assert 'data-purpose="c_d" data-status="denied" data-sale-or-share="true"' in html
    assert "custom basis" in html  # a basis without a string of its own is shown as written
    assert 'id="gpc-notice" class="notice" role="status" hidden' in html


SPENDERS = {
    "segment_id": "big_spenders",
    "name": "Big spenders",
    "required_purposes": ["marketing_email"],
    "reason": {"kind": "all", "parts": [
        {"kind": "condition", "feature": "total_spend", "op": ">=", "value": 100.0},
        {"kind": "condition", "feature": "profile.country", "op": "in", "value": ["DE", "AT"]},
    ]},
}  # fmt: skip


@pytest.mark.parametrize(
    ("lang", "segment", "words"),
    [
        ("en", SPENDERS, "Why: you spent at least 100 EUR, your “country” is “DE” or “AT” and you allowed"
         " Marketing e-mail."),
        ("de", SPENDERS, "Warum: Sie haben mindestens 100 EUR ausgegeben, Ihr Merkmal „country“ ist „DE“"
         " oder „AT“ und Sie haben Werbe-E-Mails erlaubt."),
        ("en", {"reason": None, "required_purposes": []},
         "Why: a model grouped you with customers who behave like you."),
        ("en", {"required_purposes": [], "reason": {"kind": "not", "parts": [{"kind": "any", "parts": [
            {"kind": "condition", "feature": "last_seen_days", "op": "<=", "value": 7},
            {"kind": "condition", "feature": "events.page_view", "op": ">", "value": 2},
            {"kind": "rule", "text": "total_spend > purchase_count"},
        ]}]}},
         "Why: it is not the case that either you visited us in the last 7 days, the number of your"
         " “page view” actions is more than 2 or the rule total_spend > purchase_count holds."),
        ("en", {"required_purposes": ["a_new_purpose"], "reason": {
            "kind": "condition", "feature": "profile.vip", "op": "is set"}},
         "Why: your “vip” is set and you allowed A new purpose."),
    ],
)  # fmt: skip
def test_segment_reasons_in_plain_words(lang: str, segment: dict[str, object], words: str) -> None:
    assert segment_reason(lang, segment, partial(purpose_title, lang), "EUR") == words


def test_the_page_lists_segments_with_why_or_says_none_or_unavailable() -> None:
    catalog = PurposeCatalog.model_validate({"purposes": []})
    render = partial(render_page, "en", catalog, {}, "/preferences/t", False, currency="CHF")
    html = render([SPENDERS | {"name": "<b>Big</b>"}])
    assert '<li class="segment" data-segment="big_spenders"><h3>&lt;b&gt;Big&lt;/b&gt;</h3>' in html
    assert "Why: you spent at least 100 CHF" in html  # the shop's currency (CONSENT_SHOP_CURRENCY)
    assert 'data-segments="none"' in render([]) and 'data-segments="unavailable"' in render(None)


NOTICED = PurposeCatalog.model_validate(
    {"purposes": [{"id": "news", "description": "News", "lawful_basis": "consent", "defaults": {},
                   "retention_days": 30, "notice": "We write to you <weekly>.", "notice_version": 3,
                   "notice_translations": {"de": "Wir schreiben Ihnen <wöchentlich>."}}]}
)  # fmt: skip


@pytest.mark.parametrize(
    ("state", "notice", "agreed"),
    [
        (PurposeState(status="granted", effective=True, notice_version=3), "current", "3"),
        (PurposeState(status="granted", effective=True, notice_version=2), "outdated", "2"),
        (PurposeState(status="granted", effective=True), "outdated", ""),  # granted before versions
        (PurposeState(status="denied", effective=False, notice_version=2), "current", ""),
    ],
)
def test_the_page_shows_the_agreed_notice_version_and_asks_again_under_a_newer_one(
    state: PurposeState, notice: str, agreed: str
) -> None:
    html = render_page("en", NOTICED, {"news": state}, "/preferences/t", False, segments=[], currency="EUR")
    assert f'data-notice="{notice}"' in html
    assert "We write to you &lt;weekly&gt;." in html and "Notice version 3." in html
    assert f'<span class="notice-agreed" data-version="{agreed}">' in html
    if agreed:
        assert f"You agreed to version {agreed}." in html
    asked = 'class="renew"' in html and MESSAGES["en"]["notice_changed"] in html
    assert asked == (notice == "outdated")
    assert ("Agree to version 3" in html) == asked


def _row(n: int, purpose: str = "marketing_email", **fields: object) -> dict[str, object]:
    base = {"event_id": f"e{n}", "purpose": purpose, "status": "granted", "reason": "user",
            "recorded_at": NOW, "published": True, "sequence": n}  # fmt: skip
    return base | fields


def test_each_recent_choice_says_whether_consent_published_and_the_segmenter_applied_it() -> None:
    rows = [_row(1), _row(2, status="denied"), _row(3, "profiling"), _row(4, "profiling", published=False)]
    applied: dict[str, dict[str, object]] = {
        "marketing_email": {"status": "denied", "sequence": 2},
        "profiling": {"sequence": 1},
    }
    reach = choice_reach(rows, unsent={"e3"}, applied=applied, delivered=None, recorded=None)
    assert [(c.purpose, c.consent, c.segmenter) for c in reach] == [
        ("profiling", "unchanged", None),  # newest first; a repeat had nothing to tell
        ("profiling", "pending", "pending"),
        ("marketing_email", "published", "applied"),
        ("marketing_email", "published", "applied"),  # superseded by a change the segmenter holds
    ]
    assert not any(c.settled for c in reach[1:2]) and reach[0].settled
    assert [c.segmenter for c in choice_reach(rows[:1], set(), None, None, None)] == ["unavailable"]
    html = render_choices("de", reach, partial(purpose_title, "de"))
    assert 'data-settled="false"' in html and MESSAGES["de"]["reach.segmenter.pending"] in html
    assert "Werbe-E-Mails: Nicht erlaubt" in html
    assert len(choice_reach([_row(n) for n in range(9)], set(), {}, {}, set())) == RECENT


def _sent(total: int, delivered: int = 0, pending: int = 0, failed: int = 0) -> dict[str, int]:
    return {"total": total, "delivered": delivered, "pending": pending, "failed": failed}


def test_each_recent_choice_says_whether_delivery_applied_it_and_its_destinations_were_told() -> None:
    rows = [
        _row(1),
        _row(2, status="denied"),
        _row(3, "profiling"),
        _row(4, "personalization", sequence=None),
    ]
    delivered: dict[str, dict[str, object]] = {
        "marketing_email": {"effective": False, "sequence": 2, "webhooks": _sent(2, delivered=1, pending=1)},
        "profiling": {"effective": True, "sequence": 2, "webhooks": _sent(0)},
        "personalization": {"effective": True, "sequence": None, "webhooks": None},
    }
    reach = choice_reach(rows, set(), applied={}, delivered=delivered, recorded=None)
    assert [(c.purpose, c.delivery, c.destinations) for c in reach] == [
        ("personalization", "applied", None),  # no sequences: the state tells, the webhooks cannot
        ("profiling", "pending", None),  # delivery holds an older change
        ("marketing_email", "applied", "sending"),
        ("marketing_email", "applied", None),  # superseded: the webhooks held are the later change's
    ]
    assert not reach[2].settled  # the page keeps asking while a destination is being told
    for webhooks, sent in [
        (_sent(2, delivered=2), "delivered"),
        (_sent(2, delivered=1, failed=1), "failed"),
        (_sent(0), "none"),
    ]:
        held = {"marketing_email": {"effective": False, "sequence": 2, "webhooks": webhooks}}
        assert choice_reach(rows[:2], set(), {}, held, None)[0].destinations == sent
    # Delivery not running or not configured: "not known", and the page stops waiting for it.
    held = {"marketing_email": {"status": "granted", "sequence": 1}}
    unknown = choice_reach(rows[:1], set(), held, None, None)
    assert [(c.delivery, c.destinations, c.settled) for c in unknown] == [("unavailable", None, True)]
    html = render_choices("en", unknown, partial(purpose_title, "en"))
    assert MESSAGES["en"]["reach.delivery.unavailable"] in html and 'data-delivery="unavailable"' in html
    html = render_choices("de", reach, partial(purpose_title, "de"))
    assert MESSAGES["de"]["reach.destinations.sending"] in html and 'data-destinations="sending"' in html


def test_each_recent_choice_says_whether_the_audit_ledger_recorded_it() -> None:
    rows = [_row(1), _row(2, status="denied"), _row(3, published=False)]
    reach = choice_reach(rows, unsent={"e2"}, applied={}, delivered={}, recorded={"e1"})
    assert [(c.consent, c.ledger) for c in reach] == [
        ("unchanged", None),  # a repeat made no event, so the ledger has nothing to record
        ("pending", "pending"),  # not yet out of the outbox, so not in the ledger either
        ("published", "recorded"),
    ]
    held = {"marketing_email": {"status": "granted", "sequence": 1}}
    waiting = choice_reach(rows[:1], set(), held, held, recorded=set())
    assert [(c.segmenter, c.ledger, c.settled) for c in waiting] == [("applied", "pending", False)]
    # Audit not running or not configured: "not known", and the page stops waiting for it.
    unknown = choice_reach(rows[:1], set(), held, held, recorded=None)
    assert [(c.ledger, c.settled) for c in unknown] == [("unavailable", True)]
    shown = [("en", reach, "recorded"), ("de", reach, "pending"), ("de", unknown, "unavailable")]
    for lang, choices, state in shown:
        html = render_choices(lang, choices, partial(purpose_title, lang))
        assert MESSAGES[lang][f"reach.ledger.{state}"] in html and f'data-ledger="{state}"' in html


@pytest.mark.parametrize(("lang", "words"), [
    ("en", "Why: you spent more than 50 USD and the amount you spent in USD is not 70."),
    ("de", "Warum: Sie haben mehr als 50 USD ausgegeben und Ihr Umsatz in USD ist nicht 70."),
])  # fmt: skip
def test_amounts_are_worded_in_the_shops_currency(lang: str, words: str) -> None:
    segment = {"required_purposes": [], "reason": {"kind": "all", "parts": [
        {"kind": "condition", "feature": "total_spend", "op": ">", "value": 50},
        {"kind": "condition", "feature": "total_spend", "op": "!=", "value": 70},
    ]}}  # fmt: skip
    assert segment_reason(lang, segment, partial(purpose_title, lang), "USD") == words


def test_the_notice_is_shown_in_the_pages_language_when_the_catalog_has_it() -> None:
    state = {"news": PurposeState(status="granted", effective=True, notice_version=3)}
    german = render_page("de", NOTICED, state, "/preferences/t", False, segments=[], currency="EUR")
    assert "Wir schreiben Ihnen &lt;wöchentlich&gt;." in german and "Fassung 3 des Hinweises." in german
    english = render_page("en", NOTICED, state, "/preferences/t", False, segments=[], currency="EUR")
    assert "We write to you &lt;weekly&gt;." in english and "wöchentlich" not in english
