"""Store errors; the tree is drawn in store/base.py."""


class StoreError(Exception):
    pass


class KeyExists(StoreError):
    pass


class KeyNotFound(StoreError):
    pass


class RevisionMismatch(StoreError):
    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"{key}: expected revision {expected}, found {actual}")
        self.expected = expected
        self.actual = actual


class Compacted(StoreError):
    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} has been compacted (at {compacted})")
        self.requested = requested
        self.compacted = compacted
