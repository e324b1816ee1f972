"""Tools for checking the suite itself (run by hand, not collected)."""
