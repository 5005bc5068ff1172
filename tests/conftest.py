"""Make `ansible_collections.llmstack.deploy` importable from the checkout."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".collections")
for extra in (COLLECTIONS, os.path.join(ROOT, "tests", "lab")):
    if extra not in sys.path:
        sys.path.insert(0, extra)
