"""Metrics (Prometheus) and, later, health endpoints."""
