"""irlib's public face: what `irlib/__init__.py` exports is exactly its `__all__`."""

import irlib


def test_all_names_are_exported_and_nothing_else_public() -> None:
    public = {n for n in vars(irlib) if not n.startswith("_")} - {
        "errors",
        "profile",
        "lab",
        "cli",
    }  # submodules appear once imported
    assert set(irlib.__all__) - {"__version__"} == public
    for name in irlib.__all__:
        assert hasattr(irlib, name)
