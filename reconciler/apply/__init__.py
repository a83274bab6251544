"""Changing the machine: rendering launch units, starting and stopping them, the journal.

The only part of the package that changes the machine (tests/test_layers.py enforces it). It
carries out a `Plan` and decides nothing: every start, restart, move and keep carries its
resolved `Launch`, every stop the instance it stops.
"""
