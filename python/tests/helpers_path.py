"""Puts python/ (the helpers) first on sys.path, so that the tests import
the very files jarvisctl embeds."""
import os
import sys

HELPERS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path[0] != HELPERS:
    sys.path.insert(0, HELPERS)
