"""The preference center's HTML, rendered on the server (escaped strings, no template engine)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from html import escape
from string import Template
from typing import Any

from services.consent.preference.messages import text
from services.consent.preference.reasons import segment_reason
from shared.catalog import Purpose, PurposeCatalog
from shared.events import PurposeState

# The strings the script shows after a click (the rest of the page is rendered here).
SCRIPT_KEYS = (
    "granted", "denied", "allow", "withdraw", "saving", "saved_published", "saved_pending", "failed",
    "gpc_recorded", "gpc_blocks_grant", "erased", "notice_agreed", "pref_removed", "used_by",
    "used_by_none", "used_by_unavailable", "feeling_thanks",
)  # fmt: skip

_STYLE = """body{font:1rem/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff;margin:0}
main{max-width:46rem;margin:0 auto;padding:1.5rem}
.purpose{border:1px solid #767676;border-radius:.5rem;padding:1rem;margin:1rem 0;list-style:none}
.purposes,.segments{padding:0}fieldset{border:1px solid #767676;border-radius:.5rem}
.stated,.choice{margin:1rem 0}label{margin-right:1rem;white-space:nowrap}
.segment{list-style:none;border-top:1px solid #767676}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
dt{font-weight:600}dd{margin:0}
button{font:inherit;padding:.5rem 1.25rem;border-radius:.375rem;border:2px solid #0b4f8a;
background:#0b4f8a;color:#fff;cursor:pointer}
button[data-action=withdraw],button.secondary{background:#fff;color:#0b4f8a}
button:focus-visible{outline:3px solid #b35900;outline-offset:2px}
.notice-text{font-style:italic}
.notice{border-left:4px solid #0b4f8a;padding:.5rem 1rem;background:#eef4fa}"""

_PAGE = Template("""<!doctype html>
<html lang="$lang">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>$title</title>
<style>$style</style>
</head>
<body>
<main id="preferences" data-endpoint="$endpoint" data-gpc-recorded="$gpc_recorded">
<h1>$title</h1>
<p>$intro</p>
<p id="gpc-notice" class="notice" role="status"$gpc_hidden>$gpc_text</p>
<ul class="purposes">
$purposes
</ul>
$choices
$segments
$preferences
$feeling
$your_data
</main>
<script id="strings" type="application/json">$strings</script>
<script src="/preferences/static/preferences.js" defer></script>
</body>
</html>
""")

_REFUSAL = Template("""<!doctype html>
<html lang="$lang">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title><style>$style</style></head>
<body><main><h1>$title</h1><p id="refusal" data-reason="$reason">$message</p></main></body>
</html>
""")


def render_page(
    lang: str,
    catalog: PurposeCatalog,
    states: Mapping[str, PurposeState],
    endpoint: str,
    gpc_recorded: bool,
    segments: Sequence[Mapping[str, Any]] | None,
    preferences: str = "",
    choices: str = "",
    feeling: str = "",
    *,
    currency: str,
) -> str:
    """The page: every catalog purpose with the customer's current choice and a button to change it,
    then the `choices` section (reach_page.py), the segments the customer is in and why (None: the
    segmenter did not answer), then the `preferences` section (zero_party_page.py)."""
    strings = {key: text(lang, key) for key in SCRIPT_KEYS}
    return _PAGE.substitute(
        lang=lang,
        title=escape(text(lang, "title")),
        intro=escape(text(lang, "intro")),
        style=_STYLE,
        endpoint=escape(endpoint),
        gpc_recorded=str(gpc_recorded).lower(),
        gpc_hidden="" if gpc_recorded else " hidden",
        gpc_text=escape(text(lang, "gpc_recorded")),
        purposes="\n".join(_purpose(lang, p, states[p.id]) for p in catalog.purposes),
        segments=render_segments(lang, segments, currency),
        preferences=preferences,
        choices=choices,
        feeling=feeling,
        your_data=_your_data(lang, endpoint),
        # "<" escaped so no string can close the script element.
        strings=json.dumps(strings).replace("<", "\\u003c"),
    )


def render_refusal(lang: str, reason: str) -> str:
    return _REFUSAL.substitute(
        lang=lang,
        title=escape(text(lang, "refused_title")),
        style=_STYLE,
        reason=escape(reason),
        message=escape(text(lang, f"refused.{reason}")),
    )


def render_segments(lang: str, segments: Sequence[Mapping[str, Any]] | None, currency: str) -> str:
    """The segments section; the script fetches it again after a click (`/live`)."""
    title = partial(purpose_title, lang)
    if segments is None:
        unavailable = escape(text(lang, "segments_unavailable"))
        body = f'<p class="notice" data-segments="unavailable">{unavailable}</p>'
    elif not segments:
        body = f'<p data-segments="none">{escape(text(lang, "segments_none"))}</p>'
    else:
        items = "".join(
            f'<li class="segment" data-segment="{escape(str(s.get("segment_id", "")))}">'
            f"<h3>{escape(str(s.get('name', '')))}</h3>"
            f'<p class="why">{escape(segment_reason(lang, s, title, currency))}</p></li>'
            for s in segments
        )
        body = f'<ul class="segments">{items}</ul>'
    return (
        '<section id="segments" aria-labelledby="segments-title">'
        f'<h2 id="segments-title">{escape(text(lang, "segments_title"))}</h2>'
        f"<p>{escape(text(lang, 'segments_intro'))}</p>{body}</section>"
    )


def _your_data(lang: str, endpoint: str) -> str:
    """The export download and the erasure request, which asks for a confirmation first."""

    def t(key: str) -> str:
        return escape(text(lang, key))

    return (
        '<section id="your-data" aria-labelledby="data-title">'
        f'<h2 id="data-title">{t("data_title")}</h2><p>{t("data_intro")}</p>'
        f'<p><a id="export" href="{escape(endpoint)}/export" download="my-data.json">{t("download")}</a></p>'
        f'<p><button type="button" id="erase" aria-expanded="false" aria-controls="erase-confirm">'
        f"{t('erase')}</button></p>"
        f'<div id="erase-confirm" hidden><p id="erase-warning">{t("erase_warning")}</p>'
        '<button type="button" id="erase-yes" aria-describedby="erase-warning">'
        f"{t('erase_confirm')}</button> "
        f'<button type="button" id="erase-no" class="secondary">{t("cancel")}</button></div>'
        '<p id="erase-outcome" role="status" aria-live="polite"></p></section>'
    )


def purpose_title(lang: str, purpose_id: str) -> str:
    return text(lang, f"purpose.{purpose_id}", purpose_id.replace("_", " ").capitalize())


def purpose_about(lang: str, purpose: Purpose) -> str:
    """What the purpose is, in the page's words; a purpose the strings lack (an operator's own
    catalog) is described as its catalog entry says."""
    return text(lang, f"about.purpose.{purpose.id}", purpose.description)


def _purpose(lang: str, purpose: Purpose, state: PurposeState) -> str:
    heading = f"purpose-{purpose.id}"
    status = "granted" if state.effective else "denied"
    action = "withdraw" if state.effective else "allow"
    facts = (
        (text(lang, "lawful_basis"), text(lang, f"basis.{purpose.lawful_basis}", purpose.lawful_basis)),
        (text(lang, "retention"), text(lang, "retention_days").format(days=purpose.retention_days)),
        (text(lang, "sale_or_share"), text(lang, "yes" if purpose.sale_or_share else "no")),
    )
    rows = "".join(f"<dt>{escape(term)}</dt><dd>{escape(value)}</dd>" for term, value in facts)
    title = purpose_title(lang, purpose.id)
    return (
        f'<li class="purpose" data-purpose="{purpose.id}" data-status="{status}"'
        f' data-sale-or-share="{str(purpose.sale_or_share).lower()}" aria-labelledby="{heading}"'
        f' data-notice="{notice_state(purpose, state)}">'
        f'<h2 id="{heading}">{escape(title)}</h2>'
        f"<p>{escape(purpose_about(lang, purpose))}</p>{_notice(lang, purpose, state)}<dl>{rows}</dl>"
        f"<p>{escape(text(lang, 'your_choice'))}: "
        f'<strong class="status">{escape(text(lang, status))}</strong></p>'
        f'<button type="button" class="toggle" data-action="{action}" aria-describedby="{heading}">'
        f"{escape(text(lang, action))}</button>{_renewal(lang, purpose, state, heading)}"
        f'<p class="outcome" role="status" aria-live="polite"></p></li>'
    )


def notice_state(purpose: Purpose, state: PurposeState) -> str:
    """`outdated` when the customer's grant was given under an older notice than the catalog's (a
    grant recorded without a version counts as version 1, the notice before versions existed)."""
    if state.effective and (state.notice_version or 1) < purpose.notice_version:
        return "outdated"
    return "current"


def _notice(lang: str, purpose: Purpose, state: PurposeState) -> str:
    """The notice's text and version, and the version the customer agreed to (while they allow it)."""
    words = escape(purpose.notice_in(lang))
    version = escape(text(lang, "notice_version").format(version=purpose.notice_version))
    agreed = state.notice_version if state.effective else None
    shown = escape(text(lang, "notice_agreed").format(version=agreed)) if agreed else ""
    return (
        (f'<p class="notice-text">{words}</p>' if words else "")
        + f'<p><span class="notice-version">{version}</span> '
        f'<span class="notice-agreed" data-version="{agreed or ""}">{shown}</span></p>'
    )


def _renewal(lang: str, purpose: Purpose, state: PurposeState, heading: str) -> str:
    """For a grant under an older notice: the request to read it again, and a button to agree."""
    if notice_state(purpose, state) != "outdated":
        return ""
    changed = f"notice-changed-{purpose.id}"
    label = text(lang, "agree_again").format(version=purpose.notice_version)
    return (
        f' <button type="button" class="renew" data-action="allow" aria-describedby="{changed}">'
        f"{escape(label)}</button>"
        f'<p id="{changed}" class="notice notice-changed">{escape(text(lang, "notice_changed"))}</p>'
    )
