"""SQLAlchemy 2 persistence: revisions, workspaces, audit (the revision log)."""
