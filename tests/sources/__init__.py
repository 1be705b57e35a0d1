"""Tests of the feed readers in sprx.readers."""
