"""Client keys: the keyring actor that keeps the keys added at run time (hashed)."""

from .keyring import Keyring, key_hash, new_key

__all__ = ["Keyring", "key_hash", "new_key"]
