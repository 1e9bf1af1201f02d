"""split hygiene: each triple says whether it may be trained on

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Existing triples are marked by the same rule new ones are (``training_exclusion``): triples of
validation, test and HumanEval tasks, stored before this revision, stop being exported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.store.tasks import training_exclusion

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_CHUNK = 500


def upgrade() -> None:
    # Added as "not trainable", then the rule allows what it allows; the server default is
    # dropped afterwards so that every writer has to decide.
    with op.batch_alter_table('triples') as batch:
        batch.add_column(sa.Column('trainable', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    connection = op.get_bind()
    tasks = connection.execute(sa.text("SELECT id, kind, split, instruction FROM tasks")).all()
    allowed = [t.id for t in tasks if training_exclusion(t.kind, t.split, t.instruction) is None]
    update = sa.text("UPDATE triples SET trainable = :yes WHERE sample_id IN "
                     "(SELECT id FROM samples WHERE task_id IN :ids)").bindparams(
        sa.bindparam("ids", expanding=True), sa.bindparam("yes", type_=sa.Boolean()))
    for start in range(0, len(allowed), _CHUNK):
        connection.execute(update, {"ids": allowed[start:start + _CHUNK], "yes": True})
    with op.batch_alter_table('triples') as batch:
        batch.alter_column('trainable', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('triples') as batch:
        batch.drop_column('trainable')
