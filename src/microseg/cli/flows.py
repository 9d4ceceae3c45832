"""Flow commands: collect, sessions (issue: flow collector)."""
