"""Readers for each feed, beside that feed's constants: emis, systmone, ambulance, vcse."""
