"""Adapters that let one contract suite drive every source and every destination.

``sources.py``: one adapter per ``DealSource`` (file, Salesforce, HubSpot) exposing the same
operations on the CRM behind it (seed deals with contacts, edit a deal, delete a contact,
make a malformed record, expire auth, rate-limit). ``destinations.py``: one adapter per
destination x transport, each the real destination class with its real transport against
its emulator (or a file). What a backend cannot do is declared as a capability with the
reason, and the suite either asserts the declared equivalent or leaves the pair out of that
scenario's parametrisation: never a skip.
"""
