"""Monitoring bundle sources: shared config, rule and dashboard generators."""
