"""Every tlkit module imports (the fast tier, `make test-fast`, touches each one)."""

import importlib
import pkgutil

import tlkit


def _modules():
    return sorted(m.name for m in pkgutil.walk_packages(tlkit.__path__, "tlkit."))


def test_every_tlkit_module_imports():
    names = _modules()
    assert len(names) > 50 and "tlkit.runner.train" in names and "tlkit.testing.checks" in names
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # reported below, one line per module
            failed.append(f"{name}: {type(err).__name__}: {err}")
    assert not failed, "\n".join(failed)
