"""Policy builder commands: recommend (issue: policy builder)."""
