"""The preference center's "Your preferences" section: each catalog preference as a group of
checkboxes (several values) or radio buttons (one), what the customer stated, where it is used."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from services.consent.preference.messages import text
from services.consent.preference.zero_party import Value
from shared.catalog import PreferenceCatalog, PreferenceKey


def render_preferences(
    lang: str,
    catalog: PreferenceCatalog,
    stated: Mapping[str, Value],
    uses: Mapping[str, Sequence[str]] | None,
) -> str:
    """The section; `uses` is each key's segments (None: the segmenter did not answer)."""
    if not catalog.preferences:
        return ""
    forms = "".join(
        _preference(lang, key, stated.get(key.id), None if uses is None else uses.get(key.id, ()))
        for key in catalog.preferences
    )
    return (
        '<section id="stated-preferences" aria-labelledby="prefs-title">'
        f'<h2 id="prefs-title">{escape(text(lang, "prefs_title"))}</h2>'
        f"<p>{escape(text(lang, 'prefs_intro'))}</p>{forms}</section>"
    )


def used_by_text(lang: str, segments: Sequence[str] | None) -> str:
    if segments is None:
        return text(lang, "used_by_unavailable")
    if not segments:
        return text(lang, "used_by_none")
    return text(lang, "used_by").format(segments=", ".join(segments))


def _preference(lang: str, key: PreferenceKey, value: Value | None, used: Sequence[str] | None) -> str:
    chosen = set(value if isinstance(value, list) else [value] if value else [])
    kind = "checkbox" if key.multiple else "radio"
    legend = escape(text(lang, f"pref.{key.id}", key.id.replace("_", " ").capitalize()))
    about = escape(text(lang, f"about.pref.{key.id}", key.description))
    options = "".join(
        f'<label><input type="{kind}" name="{key.id}" value="{v}"{" checked" if v in chosen else ""}> '
        f"{escape(text(lang, f'pref.{key.id}.{v}', v))}</label> "
        for v in key.values
    )
    used_state = "unavailable" if used is None else "yes" if used else "no"
    return (
        f'<form class="stated" data-preference="{key.id}" data-stated="{str(bool(chosen)).lower()}">'
        f'<fieldset aria-describedby="pref-about-{key.id}"><legend id="pref-{key.id}">{legend}</legend>'
        f'<p class="pref-about" id="pref-about-{key.id}">{about}</p>{options}</fieldset>'
        f'<p class="used-by" data-used="{used_state}">{escape(used_by_text(lang, used))}</p>'
        f'<button type="submit" class="save" aria-describedby="pref-{key.id}">'
        f"{escape(text(lang, 'save'))}</button> "
        f'<button type="button" class="remove secondary" aria-describedby="pref-{key.id}"'
        f"{'' if chosen else ' hidden'}>"
        f"{escape(text(lang, 'remove'))}</button>"
        '<p class="outcome" role="status" aria-live="polite"></p></form>'
    )


def render_feeling(lang: str, answers: Sequence[str], answered: bool) -> str:
    """The optional data-use question, or thanks once the customer answered."""

    def t(key: str) -> str:
        return escape(text(lang, key))

    if answered:
        body = f'<p id="feeling-outcome" role="status">{t("feeling_thanks")}</p>'
    else:
        options = "".join(
            f'<label><input type="radio" name="feeling" value="{a}"> {t(f"feeling.{a}")}</label> '
            for a in answers
        )
        body = (
            '<form id="feeling-form"><fieldset><legend id="feeling-question">'
            f"{t('feeling_question')}</legend>{options}</fieldset>"
            f'<button type="submit" aria-describedby="feeling-question">{t("send")}</button></form>'
            '<p id="feeling-outcome" role="status" aria-live="polite"></p>'
        )
    return (
        f'<section id="feeling" aria-labelledby="feeling-title" data-answered="{str(answered).lower()}">'
        f'<h2 id="feeling-title">{t("feeling_title")}</h2><p>{t("feeling_note")}</p>{body}</section>'
    )
