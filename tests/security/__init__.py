"""The standing adversarial suite of issue 11, grouped by threat: identity, loading, availability, disclosure.

A package like every folder under tests/: its modules share names with tests/client (test_loading.py), and
helpers are imported by their package path (tests.servers, tests.security.hostile_files).
"""
