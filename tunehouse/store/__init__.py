"""Persistence: metadata through SQLAlchemy (SQLite by default, Postgres by URL) and blobs in a folder."""
