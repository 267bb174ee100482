import grey


def test_all_names_exist_and_are_exported() -> None:
    for name in grey.__all__:
        assert hasattr(grey, name), name
    public = {n for n in vars(grey) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(grey.__all__), public - set(grey.__all__)


def test_all_is_small() -> None:
    assert len(grey.__all__) <= 15
