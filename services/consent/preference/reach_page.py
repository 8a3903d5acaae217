"""The preference center's "Where your recent choices are" section (server-rendered, also re-fetched
by the script after a click)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from services.consent.preference.messages import text
from services.consent.preference.reach import ChoiceReach


def render_choices(lang: str, choices: Sequence[ChoiceReach], title: Callable[[str], str]) -> str:
    """Each recent choice, newest first, with whether consent published it, the segmenter and
    delivery applied it, delivery's webhooks for it reached the destinations, and the audit
    ledger recorded it."""
    settled = str(all(c.settled for c in choices)).lower()
    if choices:
        body = '<ul class="choices">' + "".join(_choice(lang, c, title) for c in choices) + "</ul>"
    else:
        body = f'<p data-choices="none">{escape(text(lang, "recent_none"))}</p>'
    return (
        f'<section id="recent-choices" aria-labelledby="recent-title" data-settled="{settled}">'
        f'<h2 id="recent-title">{escape(text(lang, "recent_title"))}</h2>'
        f"<p>{escape(text(lang, 'recent_intro'))}</p>{body}</section>"
    )


def _choice(lang: str, choice: ChoiceReach, title: Callable[[str], str]) -> str:
    what = text(lang, "choice_at").format(purpose=title(choice.purpose), status=text(lang, choice.status))
    why = text(lang, f"choice_by.{choice.reason}", "")
    when = choice.recorded_at.strftime("%Y-%m-%d %H:%M UTC")
    reached = [f'<li class="reach-consent">{escape(text(lang, f"reach.consent.{choice.consent}"))}</li>']
    for service, state in (
        ("segmenter", choice.segmenter),
        ("delivery", choice.delivery),
        ("destinations", choice.destinations),
        ("ledger", choice.ledger),
    ):
        if state is not None:
            words = escape(text(lang, f"reach.{service}.{state}"))
            reached.append(f'<li class="reach-{service}">{words}</li>')
    return (
        f'<li class="choice" data-purpose="{escape(choice.purpose)}" data-consent="{choice.consent}"'
        f' data-segmenter="{choice.segmenter or "none"}" data-delivery="{choice.delivery or "none"}"'
        f' data-destinations="{choice.destinations or "unknown"}" data-ledger="{choice.ledger or "none"}">'
        f"<p><strong>{escape(what)}</strong>{escape(f' ({why})' if why else '')}, {escape(when)}</p>"
        f"<ul>{''.join(reached)}</ul></li>"
    )
