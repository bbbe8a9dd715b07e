"""Shared by every test: vaults are made with the cheap test KDF (8 MiB, one pass).

Notewell refuses a vault whose passphrase wrap costs less than today's Argon2id defaults
(store/keys.py `kdf_floor`) unless the process runs with NOTEWELL_TEST_KDF=1. Set here, so
the test processes and every `notewell` they start accept the test vaults; a test that
shows the floor itself removes it (monkeypatch.delenv, or an environment without it).
"""

from store.keys import allow_test_kdf

allow_test_kdf()
