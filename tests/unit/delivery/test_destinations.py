"""A destination receives only under a signed, unexpired agreement with a lawful transfer."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.delivery.domain.destinations import EEA, Agreement, agreement_problem

TODAY = date(2026, 12, 1)


def agreement(**changes: object) -> Agreement:
    fields: dict[str, object] = {
        "processor": "Mailer GmbH",
        "reference": "DPA-1",
        "signed_on": date(2026, 1, 1),
        "expires_on": date(2027, 1, 1),
        "country": "DE",
        "transfer_mechanism": "none",
    }
    return Agreement(**(fields | changes))  # type: ignore[arg-type]


def test_a_valid_agreement_has_no_problem() -> None:
    assert agreement_problem(agreement(), TODAY) is None


def test_no_agreement_receives_nothing() -> None:
    assert agreement_problem(None, TODAY) == "no data-processing agreement"


@given(st.integers(min_value=1, max_value=3650))
def test_an_expired_agreement_names_its_expiry(days_ago: int) -> None:
    expired = TODAY - timedelta(days=days_ago)
    assert agreement_problem(agreement(expires_on=expired), TODAY) == f"the agreement expired on {expired}"


def test_the_expiry_day_itself_is_still_valid() -> None:
    assert agreement_problem(agreement(expires_on=TODAY), TODAY) is None


def test_an_agreement_signed_in_the_future_is_not_yet_valid() -> None:
    problem = agreement_problem(agreement(signed_on=TODAY + timedelta(days=1)), TODAY)
    assert problem is not None and "signed only from" in problem


@given(st.sampled_from(sorted(EEA)))
def test_an_eea_processor_needs_no_transfer_mechanism(country: str) -> None:
    assert agreement_problem(agreement(country=country), TODAY) is None


@given(st.sampled_from(["US", "IN", "BR", "GB"]), st.sampled_from(["adequacy", "scc", "bcr", "derogation"]))
def test_a_processor_outside_the_eea_needs_a_mechanism(country: str, mechanism: str) -> None:
    assert (
        agreement_problem(agreement(country=country), TODAY)
        == f"no transfer mechanism for a processor in {country}"
    )
    assert agreement_problem(agreement(country=country, transfer_mechanism=mechanism), TODAY) is None
