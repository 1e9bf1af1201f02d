"""benchmark runs and per-task results

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('benchmark_runs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('benchmark', sa.String(length=16), nullable=False),
    sa.Column('adapter', sa.String(length=300), nullable=True),
    sa.Column('model', sa.String(length=300), nullable=True),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('temperature', sa.Float(), nullable=False),
    sa.Column('ks', sa.JSON(), nullable=False),
    sa.Column('task_limit', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('tasks_total', sa.Integer(), nullable=False),
    sa.Column('tasks_done', sa.Integer(), nullable=False),
    sa.Column('pass_at_k', sa.JSON(), nullable=True),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('benchmark_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_benchmark_runs_adapter'), ['adapter'], unique=False)
        batch_op.create_index(batch_op.f('ix_benchmark_runs_benchmark'), ['benchmark'], unique=False)
        batch_op.create_index(batch_op.f('ix_benchmark_runs_status'), ['status'], unique=False)

    op.create_table('benchmark_results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('task_id', sa.String(length=200), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('correct', sa.Integer(), nullable=False),
    sa.Column('pass_at_k', sa.JSON(), nullable=False),
    sa.Column('samples', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['benchmark_runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('benchmark_results', schema=None) as batch_op:
        batch_op.create_index('ix_benchmark_results_run_task', ['run_id', 'task_id'], unique=True)



def downgrade() -> None:
    with op.batch_alter_table('benchmark_results', schema=None) as batch_op:
        batch_op.drop_index('ix_benchmark_results_run_task')

    op.drop_table('benchmark_results')
    with op.batch_alter_table('benchmark_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_benchmark_runs_status'))
        batch_op.drop_index(batch_op.f('ix_benchmark_runs_benchmark'))
        batch_op.drop_index(batch_op.f('ix_benchmark_runs_adapter'))

    op.drop_table('benchmark_runs')
