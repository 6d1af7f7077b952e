import subprocess
import sys
from importlib import metadata

import pytest

from facebench.errors import RegistryError
from facebench.registry import DATASETS, MODELS, PROTOCOLS, Registry


def test_builtins_resolve_and_descriptions_match_docstrings():
    for registry in (DATASETS, MODELS, PROTOCOLS):
        for entry in registry.entries():
            if entry.source != "builtin":
                continue
            obj = registry.get(entry.name)
            first = (obj.__doc__ or "").strip().splitlines()[0]
            assert first == entry.description, (registry.kind, entry.name)


def test_unknown_name_suggests_and_points_to_list():
    with pytest.raises(RegistryError, match=r'Did you mean "closed_set"\?.*facebench list protocols'):
        PROTOCOLS.get("closed_sett")


def test_decorator_registration():
    reg = Registry("widget", "facebench.test-widgets", {})

    @reg.register("blue")
    class Blue:
        """A blue widget."""

    assert reg.get("blue") is Blue
    assert reg.entries()[0].description == "A blue widget."


def test_entry_point_plugin(monkeypatch):
    ep = metadata.EntryPoint(name="plug", value="collections:OrderedDict", group="facebench.test-plugins")
    real = metadata.entry_points

    def fake(**kw):
        return [ep] if kw.get("group") == "facebench.test-plugins" else real(**kw)

    monkeypatch.setattr(metadata, "entry_points", fake)
    reg = Registry("widget", "facebench.test-plugins", {})
    assert "plug" in reg.names()
    import collections

    assert reg.get("plug") is collections.OrderedDict


def test_list_is_lazy_no_torch_import():
    code = ("import sys; from facebench.cli import main; main(['list', 'models']); main(['list', 'datasets']);"
            "main(['list', 'protocols']); assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "synth-cnn" in out.stdout and "closed_set" in out.stdout and "imagefolder" in out.stdout
