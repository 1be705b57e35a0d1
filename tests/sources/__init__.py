"""Tests of the feed readers in flows.sources."""
