"""The store: SQLAlchemy tables, sessions, queries, triple export, Alembic migrations."""
