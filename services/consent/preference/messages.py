"""Every string of the preference center, per language (English first: the fallback)."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your privacy choices",
        "intro": "Here is each way we would like to use your data. Nothing is used unless you allow"
        " it, and you can withdraw at any time, as easily as you allowed it.",
        "lawful_basis": "Lawful basis",
        "retention": "Kept for",
        "retention_days": "{days} days",
        "sale_or_share": "Sold or shared with partners",
        "yes": "Yes",
        "no": "No",
        "your_choice": "Your choice",
        "granted": "Allowed",
        "denied": "Not allowed",
        "allow": "Allow",
        "withdraw": "Withdraw",
        "saving": "Saving…",
        "saved_published": "Saved. Every service that uses your data has been told.",
        "saved_pending": "Saved. Our other services will be told as soon as they are reachable again.",
        "failed": "Your choice could not be saved. Please try again.",
        "gpc_recorded": "Your browser sends the Global Privacy Control signal, so we have recorded that"
        " your data must not be sold or shared.",
        "gpc_blocks_grant": "Global Privacy Control is on in your browser: sale and sharing stay off.",
        "notice_version": "Notice version {version}.",
        "notice_agreed": "You agreed to version {version}.",
        "notice_changed": "This notice has changed since you agreed to it. Please read it and choose again.",
        "agree_again": "Agree to version {version}",
        "basis.consent": "Your consent",
        "basis.contract": "Needed for your contract with us",
        "basis.legitimate_interest": "Our legitimate interest",
        "basis.legal_obligation": "Required by law",
        "refused_title": "This link cannot be used",
        "refused.invalid": "This link is not valid. Please use the link exactly as you received it, or ask"
        " us for a new one.",
        "refused.expired": "This link has expired. Please ask us for a new one.",
        "refused.revoked": "This link has been withdrawn. Please ask us for a new one.",
        "purpose.marketing_email": "Marketing e-mail",
        "purpose.marketing_sms": "Marketing text messages",
        "purpose.personalization": "Personalization",
        "purpose.profiling": "Profiling",
        "purpose.third_party_sharing": "Sharing with partners",
        "data_title": "Your data",
        "data_intro": "You can download everything we hold about you, or ask us to delete it.",
        "download": "Download my data (JSON)",
        "erase": "Delete my data",
        "erase_warning": "This deletes your choices and everything our services hold about you, and"
        " this link stops working. It cannot be undone.",
        "erase_confirm": "Yes, delete everything",
        "cancel": "Cancel",
        "erased": "Your request is recorded: your data is being deleted from every service. This link"
        " no longer works.",
        "segments_title": "Your segments",
        "segments_intro": "We group customers into segments to choose what to offer them. These are the"
        " segments you are in now, and why.",
        "segments_none": "You are in no segment right now.",
        "segments_unavailable": "Your segments cannot be shown right now. Please try again later.",
        "why": "Why: {reason}.",
        "why.and": " and ",
        "quoted": "“{value}”",
        "why.or": " or ",
        "why.all": "{parts}",
        "why.any": "either {parts}",
        "why.not": "it is not the case that {part}",
        "why.rule": "the rule {text} holds",
        "why.model": "a model grouped you with customers who behave like you",
        "why.allowed": "you allowed {purpose}",
        "why.total_spend.>=": "you spent at least {value} EUR",
        "why.total_spend.>": "you spent more than {value} EUR",
        "why.total_spend.<": "you spent less than {value} EUR",
        "why.total_spend.<=": "you spent at most {value} EUR",
        "why.purchase_count.>=": "you made at least {value} purchases",
        "why.purchase_count.>": "you made more than {value} purchases",
        "why.last_seen_days.<=": "you visited us in the last {value} days",
        "why.last_seen_days.<": "you visited us less than {value} days ago",
        "op.==": "{feature} is {value}",
        "op.!=": "{feature} is not {value}",
        "op.<": "{feature} is less than {value}",
        "op.<=": "{feature} is at most {value}",
        "op.>": "{feature} is more than {value}",
        "op.>=": "{feature} is at least {value}",
        "op.in": "{feature} is {value}",
        "op.not in": "{feature} is not {value}",
        "op.is set": "{feature} is set",
        "feature.total_spend": "the amount you spent in EUR",
        "feature.purchase_count": "the number of your purchases",
        "feature.event_count": "the number of your visits and actions",
        "feature.last_seen_days": "the number of days since your last visit",
        "feature.last_purchase_days": "the number of days since your last purchase",
        "feature.first_seen_days": "the number of days since your first visit",
        "feature.events": "the number of your {name} actions",
        "feature.profile": "your {name}",
    },
    "de": {
        "title": "Ihre Datenschutz-Einstellungen",
        "intro": "Hier sehen Sie jede Art, wie wir Ihre Daten nutzen möchten. Nichts wird genutzt,"
        " solange Sie es nicht erlauben, und Sie können jederzeit so einfach widerrufen, wie Sie"
        " zugestimmt haben.",
        "lawful_basis": "Rechtsgrundlage",
        "retention": "Aufbewahrt für",
        "retention_days": "{days} Tage",
        "sale_or_share": "An Partner verkauft oder weitergegeben",
        "yes": "Ja",
        "no": "Nein",
        "your_choice": "Ihre Wahl",
        "granted": "Erlaubt",
        "denied": "Nicht erlaubt",
        "allow": "Erlauben",
        "withdraw": "Widerrufen",
        "saving": "Wird gespeichert…",
        "saved_published": "Gespeichert. Alle Dienste, die Ihre Daten nutzen, wurden informiert.",
        "saved_pending": "Gespeichert. Unsere anderen Dienste werden informiert, sobald sie wieder"
        " erreichbar sind.",
        "failed": "Ihre Wahl konnte nicht gespeichert werden. Bitte versuchen Sie es erneut.",
        "gpc_recorded": "Ihr Browser sendet das Signal Global Privacy Control. Wir haben daher"
        " vermerkt, dass Ihre Daten weder verkauft noch weitergegeben werden dürfen.",
        "gpc_blocks_grant": "Global Privacy Control ist in Ihrem Browser aktiv: Verkauf und Weitergabe"
        " bleiben ausgeschaltet.",
        "notice_version": "Fassung {version} des Hinweises.",
        "notice_agreed": "Sie haben Fassung {version} zugestimmt.",
        "notice_changed": "Dieser Hinweis hat sich geändert, seit Sie zugestimmt haben. Bitte lesen Sie"
        " ihn und entscheiden Sie erneut.",
        "agree_again": "Fassung {version} zustimmen",
        "basis.consent": "Ihre Einwilligung",
        "basis.contract": "Für Ihren Vertrag mit uns nötig",
        "basis.legitimate_interest": "Unser berechtigtes Interesse",
        "basis.legal_obligation": "Gesetzlich vorgeschrieben",
        "refused_title": "Dieser Link kann nicht verwendet werden",
        "refused.invalid": "Dieser Link ist ungültig. Bitte verwenden Sie ihn genau so, wie Sie ihn"
        " erhalten haben, oder fordern Sie einen neuen an.",
        "refused.expired": "Dieser Link ist abgelaufen. Bitte fordern Sie einen neuen an.",
        "refused.revoked": "Dieser Link wurde zurückgezogen. Bitte fordern Sie einen neuen an.",
        "purpose.marketing_email": "Werbe-E-Mails",
        "purpose.marketing_sms": "Werbe-SMS",
        "purpose.personalization": "Personalisierung",
        "purpose.profiling": "Profilbildung",
        "purpose.third_party_sharing": "Weitergabe an Partner",
        "data_title": "Ihre Daten",
        "data_intro": "Sie können alles herunterladen, was wir über Sie gespeichert haben, oder die"
        " Löschung verlangen.",
        "download": "Meine Daten herunterladen (JSON)",
        "erase": "Meine Daten löschen",
        "erase_warning": "Damit werden Ihre Einstellungen und alles, was unsere Dienste über Sie"
        " gespeichert haben, gelöscht, und dieser Link funktioniert nicht mehr. Das kann nicht"
        " rückgängig gemacht werden.",
        "erase_confirm": "Ja, alles löschen",
        "cancel": "Abbrechen",
        "erased": "Ihr Antrag ist erfasst: Ihre Daten werden in allen Diensten gelöscht. Dieser Link"
        " funktioniert nicht mehr.",
        "segments_title": "Ihre Segmente",
        "segments_intro": "Wir fassen Kundinnen und Kunden in Segmenten zusammen, um zu entscheiden, was"
        " wir ihnen anbieten. Hier sehen Sie, in welchen Segmenten Sie gerade sind, und warum.",
        "segments_none": "Sie sind gerade in keinem Segment.",
        "segments_unavailable": "Ihre Segmente können gerade nicht angezeigt werden. Bitte versuchen Sie"
        " es später erneut.",
        "why": "Warum: {reason}.",
        "why.and": " und ",
        "quoted": "„{value}“",
        "why.or": " oder ",
        "why.all": "{parts}",
        "why.any": "entweder {parts}",
        "why.not": "es trifft nicht zu, dass {part}",
        "why.rule": "die Regel {text} trifft zu",
        "why.model": "ein Modell hat Sie Kundinnen und Kunden mit ähnlichem Verhalten zugeordnet",
        "why.allowed": "Sie haben {purpose} erlaubt",
        "why.total_spend.>=": "Sie haben mindestens {value} EUR ausgegeben",
        "why.total_spend.>": "Sie haben mehr als {value} EUR ausgegeben",
        "why.total_spend.<": "Sie haben weniger als {value} EUR ausgegeben",
        "why.total_spend.<=": "Sie haben höchstens {value} EUR ausgegeben",
        "why.purchase_count.>=": "Sie haben mindestens {value} Mal gekauft",
        "why.purchase_count.>": "Sie haben mehr als {value} Mal gekauft",
        "why.last_seen_days.<=": "Sie waren in den letzten {value} Tagen bei uns",
        "why.last_seen_days.<": "Sie waren vor weniger als {value} Tagen bei uns",
        "op.==": "{feature} ist {value}",
        "op.!=": "{feature} ist nicht {value}",
        "op.<": "{feature} ist kleiner als {value}",
        "op.<=": "{feature} ist höchstens {value}",
        "op.>": "{feature} ist größer als {value}",
        "op.>=": "{feature} ist mindestens {value}",
        "op.in": "{feature} ist {value}",
        "op.not in": "{feature} ist nicht {value}",
        "op.is set": "{feature} ist gesetzt",
        "feature.total_spend": "Ihr Umsatz in EUR",
        "feature.purchase_count": "die Zahl Ihrer Käufe",
        "feature.event_count": "die Zahl Ihrer Besuche und Aktionen",
        "feature.last_seen_days": "die Zahl der Tage seit Ihrem letzten Besuch",
        "feature.last_purchase_days": "die Zahl der Tage seit Ihrem letzten Kauf",
        "feature.first_seen_days": "die Zahl der Tage seit Ihrem ersten Besuch",
        "feature.events": "die Zahl Ihrer Aktionen {name}",
        "feature.profile": "Ihr Merkmal {name}",
    },
}
LANGUAGES = tuple(MESSAGES)


def language(accept_language: str | None) -> str:
    """The first shipped language the browser asks for (Accept-Language order), else English."""
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in MESSAGES:
            return code
    return LANGUAGES[0]


def text(lang: str, key: str, fallback: str | None = None) -> str:
    """The string in `lang`, else in English, else `fallback` (a catalog purpose without a title)."""
    found = MESSAGES[lang].get(key) or MESSAGES[LANGUAGES[0]].get(key)
    if found is None:
        if fallback is None:
            raise KeyError(key)
        return fallback
    return found
