"""Data contracts: one pandera model per feed shape."""
