"""The unit checks: what the unit says against what the app does."""
