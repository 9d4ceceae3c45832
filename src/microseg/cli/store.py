"""Store commands: db init, import, export, log, workspace (issue: foundation / store)."""
