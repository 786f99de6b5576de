"""Small immutable value types, compared and hashed by their fields, without ``dataclasses``.

Importing ``dataclasses`` loads ``inspect``, ``ast`` and more: longer than all the work of
``sdready notify``, or of ``sdready exec`` before it spawns its command. The value types
those paths build (:class:`~sdready.Listener`, :class:`~sdready.NotifyAddress`, …) derive
from :class:`Record` instead, which gives what ``@dataclass(frozen=True, slots=True)`` gave
them: immutability, equality and hashing by value, a dataclass-like ``repr``, pickling.
"""

__all__ = ["Record"]


class Record:
    """Base of an immutable value type.

    A subclass declares ``__slots__``, names its fields in constructor order in
    ``__match_args__``, and sets them in ``__init__`` with :meth:`_set`. Equality, hashing,
    ``repr`` and pickling use those fields (override :meth:`_values` to compare a stored
    form of one).
    """

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()

    def _set(self, **fields: object) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[object, ...]:
        """The constructor's arguments, in order."""
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> "tuple[type[Record], tuple[object, ...]]":
        return self.__class__, self._values()
