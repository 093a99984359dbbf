"""Ingestion: fetch, land raw, validate (GX), curate or quarantine, report."""
