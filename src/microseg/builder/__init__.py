"""Policy builder: recommended rules from collected sessions."""
