"""Prefect flows: landing → raw. Feed readers live in ``sprx.readers``, the contracts in ``schemas``."""
