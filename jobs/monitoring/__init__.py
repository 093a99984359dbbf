"""Monitoring: read captured traffic, compare it with the training profile, report."""
