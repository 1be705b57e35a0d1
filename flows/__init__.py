"""Prefect flows: landing → raw. Source-specific parsing lives in ``flows.sources``."""
