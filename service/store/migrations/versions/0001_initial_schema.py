"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Long on purpose: the first schema as Alembic generated it, one create_table per table.
    op.create_table('adapters',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('base_model', sa.String(length=300), nullable=False),
    sa.Column('parent_id', sa.String(length=200), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['adapters.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('adapters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_adapters_state'), ['state'], unique=False)

    op.create_table('tasks',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('instruction', sa.Text(), nullable=False),
    sa.Column('tests', sa.JSON(), nullable=False),
    sa.Column('setup', sa.Text(), nullable=False),
    sa.Column('entry_point', sa.String(length=200), nullable=True),
    sa.Column('reference', sa.Text(), nullable=True),
    sa.Column('split', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tasks_kind'), ['kind'], unique=False)

    op.create_table('promotions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('adapter_id', sa.String(length=200), nullable=False),
    sa.Column('previous_adapter_id', sa.String(length=200), nullable=True),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['adapter_id'], ['adapters.id'], ),
    sa.ForeignKeyConstraint(['previous_adapter_id'], ['adapters.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('promotions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promotions_adapter_id'), ['adapter_id'], unique=False)

    op.create_table('samples',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('task_id', sa.String(length=200), nullable=False),
    sa.Column('program', sa.Text(), nullable=False),
    sa.Column('completion', sa.Text(), nullable=True),
    sa.Column('prompt', sa.Text(), nullable=True),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('model', sa.String(length=300), nullable=True),
    sa.Column('adapter', sa.String(length=300), nullable=True),
    sa.Column('sampling', sa.JSON(), nullable=True),
    sa.Column('conditioned_on', sa.String(length=8), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('finish_reason', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_samples_adapter'), ['adapter'], unique=False)
        batch_op.create_index(batch_op.f('ix_samples_task_id'), ['task_id'], unique=False)

    op.create_table('training_runs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('parent_adapter_id', sa.String(length=200), nullable=True),
    sa.Column('output_adapter_id', sa.String(length=200), nullable=True),
    sa.Column('data_path', sa.Text(), nullable=True),
    sa.Column('data_sha256', sa.String(length=64), nullable=True),
    sa.Column('triples_from', sa.Integer(), nullable=True),
    sa.Column('triples_to', sa.Integer(), nullable=True),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['output_adapter_id'], ['adapters.id'], ),
    sa.ForeignKeyConstraint(['parent_adapter_id'], ['adapters.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('executions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('sample_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('feedback', sa.Text(), nullable=False),
    sa.Column('reward', sa.String(length=8), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('tests_passed', sa.Integer(), nullable=False),
    sa.Column('tests_total', sa.Integer(), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.Column('outcome', sa.JSON(), nullable=False),
    sa.Column('backend', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sample_id'], ['samples.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_executions_sample_id'), ['sample_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_executions_status'), ['status'], unique=False)

    op.create_table('external_feedback',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('sample_id', sa.String(length=32), nullable=False),
    sa.Column('raw', sa.JSON(), nullable=False),
    sa.Column('label', sa.String(length=8), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('components', sa.JSON(), nullable=True),
    sa.Column('author', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sample_id'], ['samples.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('external_feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_external_feedback_sample_id'), ['sample_id'], unique=False)

    op.create_table('triples',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('sample_id', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('execution_id', sa.String(length=32), nullable=True),
    sa.Column('feedback_id', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('feedback', sa.Text(), nullable=False),
    sa.Column('reward', sa.String(length=8), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['execution_id'], ['executions.id'], ),
    sa.ForeignKeyConstraint(['feedback_id'], ['external_feedback.id'], ),
    sa.ForeignKeyConstraint(['sample_id'], ['samples.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('execution_id'),
    sa.UniqueConstraint('feedback_id')
    )
    with op.batch_alter_table('triples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_triples_reward'), ['reward'], unique=False)
        batch_op.create_index('ix_triples_sample_source', ['sample_id', 'source'], unique=False)
        batch_op.create_index(batch_op.f('ix_triples_source'), ['source'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('triples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_triples_source'))
        batch_op.drop_index('ix_triples_sample_source')
        batch_op.drop_index(batch_op.f('ix_triples_reward'))

    op.drop_table('triples')
    with op.batch_alter_table('external_feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_external_feedback_sample_id'))

    op.drop_table('external_feedback')
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_executions_status'))
        batch_op.drop_index(batch_op.f('ix_executions_sample_id'))

    op.drop_table('executions')
    op.drop_table('training_runs')
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_samples_task_id'))
        batch_op.drop_index(batch_op.f('ix_samples_adapter'))

    op.drop_table('samples')
    with op.batch_alter_table('promotions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_promotions_adapter_id'))

    op.drop_table('promotions')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tasks_kind'))

    op.drop_table('tasks')
    with op.batch_alter_table('adapters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_adapters_state'))

    op.drop_table('adapters')
