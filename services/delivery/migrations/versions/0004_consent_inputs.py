"""Which consent change delivery applied, and the webhooks that followed from it.

`consent_inputs` keeps, per customer and purpose, the inputs that carried the consent change
delivery holds (the `consent.changes` record and the `consent.state` snapshot consent publishes
for it); `deliveries.cause_id` names the input behind each webhook (for a membership change, the
input the segmenter names as its cause: a withdrawal's eviction is that withdrawal's). So the
preference center can tell a customer that their choice reached delivery and its destinations.
An erasure deletes the customer's rows. Rows enqueued before this revision have no cause.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_inputs",
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("cause_id", sa.Text, nullable=False),
        sa.Column("at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "purpose", "cause_id"),
    )
    op.add_column("deliveries", sa.Column("cause_id", sa.Text))
    op.create_index("deliveries_cause", "deliveries", ["customer_id", "cause_id"])


def downgrade() -> None:
    op.drop_index("deliveries_cause", "deliveries")
    op.drop_column("deliveries", "cause_id")
    op.drop_table("consent_inputs")
