"""irlib's public face: what `irlib/__init__.py` exports is exactly its `__all__`."""

import types

import irlib


def test_all_names_are_exported_and_nothing_else_public() -> None:
    # submodules appear as attributes once anything imports them: they are not re-exports
    public = {
        n
        for n, v in vars(irlib).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert set(irlib.__all__) - {"__version__"} == public
    for name in irlib.__all__:
        assert hasattr(irlib, name)
