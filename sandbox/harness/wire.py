"""The RPC value encoding between the candidate-side server and the tester: plain values of exact
built-in types travel as canonical JSON, anything else as an opaque handle."""

from __future__ import annotations

# Exact built-in types only: a subclass could override __eq__/__hash__/__repr__.
_SCALARS = (type(None), bool, str)


def encode(value, handles: "dict[int, object] | None") -> object:
    """Canonical JSON form of a plain value; other objects become handles (server side)."""
    t = type(value)
    if t in _SCALARS:
        return value
    if t is int:
        return {"int": str(value)}
    if t is float:
        return {"float": repr(value)}
    if t is bytes:
        import base64

        return {"bytes": base64.b64encode(value).decode()}
    if t in (list, tuple, set, frozenset):
        return {t.__name__: [encode(v, handles) for v in value]}
    if t is dict:
        return {"dict": [[encode(k, handles), encode(v, handles)] for k, v in value.items()]}
    if handles is None:
        raise TypeError(f"cannot pass a {t.__name__} to candidate code (only plain values and candidate objects)")
    hid = id(value)
    handles[hid] = value
    return {"handle": hid, "type": t.__name__[:100], "callable": callable(value)}


_SEQUENCES = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def decode(obj, make_handle) -> object:
    """Rebuild plain values from their canonical form; only known tags are accepted."""
    if obj is None or type(obj) in (bool, str):
        return obj
    if type(obj) is dict and set(obj) == {"handle", "type", "callable"} and type(obj["handle"]) is int:
        return make_handle(obj["handle"], str(obj["type"]), obj["callable"] is True)
    if type(obj) is dict and len(obj) == 1:
        ((tag, val),) = obj.items()
        if tag == "int" and type(val) is str:
            return int(val)
        if tag == "float" and type(val) is str:
            return float(val)
        if tag == "bytes" and type(val) is str:
            import base64

            return base64.b64decode(val)
        if tag in _SEQUENCES and type(val) is list:
            return _SEQUENCES[tag](decode(v, make_handle) for v in val)
        if tag == "dict" and type(val) is list and all(type(kv) is list and len(kv) == 2 for kv in val):
            return {decode(k, make_handle): decode(v, make_handle) for k, v in val}
    raise ProtocolError(f"unexpected value in reply: {str(obj)[:80]}")


class ProtocolError(Exception):
    pass
