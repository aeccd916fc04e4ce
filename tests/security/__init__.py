"""The standing adversarial suite of issue 11, grouped by threat: identity, loading, availability, disclosure.

A package because its modules share names with tests/client (test_loading.py), which pytest's default
import mode allows only inside packages.
"""
