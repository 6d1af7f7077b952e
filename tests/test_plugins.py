"""Plug-ins through entry points, as an installed package would declare them.

* The README's plug-in example (its ``pyproject.toml`` and ``my_package/adapter.py`` blocks, read from
  the README itself) is built and installed with pip into a temporary ``--target`` folder; the real
  ``facebench`` command, with that folder on ``PYTHONPATH``, lists it and runs a suite with it.
* Broken plug-ins are installed as bare ``*.dist-info`` folders (what pip writes: METADATA and
  entry_points.txt) so that each case is fast and exact: a module that does not import, a name that a
  built-in holds, a name two distributions claim, a value that is not ``module:attribute``.

Nothing is installed into the test environment: every folder is under ``tmp_path`` and is only seen
by subprocesses (or by ``Registry`` objects made for the test with ``sys.path`` patched).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from facebench.errors import RegistryError
from facebench.registry import MODELS, PluginWarning, Registry

ROOT = Path(__file__).resolve().parents[1]
MINI_SUITE = """\
name: plugin-smoke
defaults: {batch_size: 64, device: cpu, seed: 0, bootstrap: 20}
tasks:
  - name: synth-closed-set
    dataset: synth
    split: test
    dataset_args: {n: 64}
    protocol: closed_set
"""


def _facebench(args: list[str], pythonpath: Path, cwd: Path) -> subprocess.CompletedProcess:
    paths = [str(pythonpath), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    code = "import sys; from facebench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def _readme_plugin_blocks() -> tuple[str, str]:
    """The ``pyproject.toml`` and ``my_package/adapter.py`` blocks of the README's "Extending" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Extending facebench", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)
    toml = [b for lang, b in blocks if lang == "toml" and b.startswith("# pyproject.toml")]
    code = [b for lang, b in blocks if lang == "python" and b.startswith("# my_package/adapter.py")]
    assert len(toml) == 1 and len(code) == 1, "the README's plug-in example is missing or duplicated"
    return toml[0], code[0]


def _dist_info(site: Path, dist: str, group: str, lines: list[str], modules: dict[str, str] = None) -> None:
    """Write an installed distribution the way pip leaves it: ``<dist>-<version>.dist-info``."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "\n".join(lines) + "\n")
    for name, source in (modules or {}).items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.mark.slow
def test_readme_plugin_example_installed_with_pip_is_listed_and_runs(tmp_path):
    toml, code = _readme_plugin_blocks()
    if importlib.util.find_spec("setuptools") is None:  # venvs of Python >= 3.12 come without it
        pytest.skip("setuptools is not installed: pip cannot build the example offline (--no-build-isolation)")
    src = tmp_path / "my-facebench-plugin"
    (src / "my_package").mkdir(parents=True)
    (src / "pyproject.toml").write_text(toml)
    (src / "my_package" / "__init__.py").write_text("")
    (src / "my_package" / "adapter.py").write_text(code)
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert list(target.glob("my_facebench_plugin-0.1.0.dist-info/entry_points.txt"))

    listed = _facebench(["list", "models"], target, tmp_path)
    assert listed.returncode == 0, listed.stderr
    line = next(l for l in listed.stdout.splitlines() if l.startswith("my-model "))
    assert "Toy linear expression classifier" in line and "my-facebench-plugin" in line
    assert "synth-cnn" in listed.stdout and "warning" not in listed.stderr

    (tmp_path / "mini.yaml").write_text(MINI_SUITE)
    run = _facebench(["run", "mini.yaml", "--model", "my-model", "--model-args", "seed=1", "--out", "run",
                      "--cache-dir", "cache", "--no-progress", "--quiet", "--no-figures"], target, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "my-model" in json.dumps(results)
    assert "synth-closed-set" in json.dumps(results)
    # the test environment is untouched: the plug-in is not importable here
    assert importlib.util.find_spec("my_package") is None
    assert "my-model" not in MODELS


def test_broken_plugins_warn_and_are_left_out_of_list(tmp_path):
    site = tmp_path / "site"
    _dist_info(site, "good-plugin", "facebench.models", ["good-model = good_mod:Good"],
               {"good_mod": '''
                   class Good:
                       """A plug-in that loads"""
               '''})
    _dist_info(site, "broken-import", "facebench.models", ["broken-model = broken_mod:Broken"],
               {"broken_mod": "import a_module_that_is_not_installed_anywhere\n"})
    _dist_info(site, "missing-attr", "facebench.models", ["no-attr = good_mod:NotThere"])
    _dist_info(site, "exits", "facebench.models", ["exits = exit_mod:X"], {"exit_mod": "raise SystemExit(3)\n"})
    _dist_info(site, "shadow-plugin", "facebench.models", ["synth-cnn = good_mod:Good"])
    _dist_info(site, "twin-a", "facebench.models", ["twin = good_mod:Good"])
    _dist_info(site, "twin-b", "facebench.models", ["twin = good_mod:Other"])
    _dist_info(site, "bad-value", "facebench.models", ["bad-value = not a target"])

    out = _facebench(["list", "models"], site, tmp_path)
    assert out.returncode == 0, out.stderr
    names = [l.split()[0] for l in out.stdout.splitlines() if l.strip()]
    assert "good-model" in names and "synth-cnn" in names and "faceptor" in names
    for left_out in ("broken-model", "no-attr", "exits", "twin", "bad-value"):
        assert left_out not in names
    synth = next(l for l in out.stdout.splitlines() if l.startswith("synth-cnn "))
    assert "plug-in" not in synth  # the built-in is kept
    err = out.stderr
    assert "Traceback" not in err
    assert re.search(r"warning: model plug-in 'broken-model' from distribution 'broken-import' \(entry point "
                     r"broken-model = broken_mod:Broken in group facebench.models\) does not load: "
                     r"ModuleNotFoundError: .*a_module_that_is_not_installed_anywhere", err), err
    assert re.search(r"'no-attr' from distribution 'missing-attr' .* does not load: AttributeError", err), err
    assert "'exits' from distribution 'exits' (entry point exits = exit_mod:X in group facebench.models) " \
           "does not load: SystemExit: 3" in err
    assert re.search(r"distribution 'shadow-plugin' \(entry point synth-cnn = good_mod:Good\) in group "
                     r"facebench.models has the name of a built-in \(facebench.models.synth_cnn:SynthCNNAdapter\); "
                     r"the built-in is kept", err), err
    assert "'twin' is claimed by more than one entry point" in err and "'twin-a'" in err and "'twin-b'" in err
    assert "distribution 'bad-value' (entry point bad-value = not a target)" in err
    assert "is not 'module:attribute'" in err


def test_using_a_broken_plugin_by_name_is_an_error_naming_it(tmp_path):
    site = tmp_path / "site"
    _dist_info(site, "broken-import", "facebench.models", ["broken-model = broken_mod:Broken"],
               {"broken_mod": "raise ImportError('needs libfoo')\n"})
    _dist_info(site, "twin-a", "facebench.models", ["twin = x_mod:A"])
    _dist_info(site, "twin-b", "facebench.models", ["twin = y_mod:B"])
    (tmp_path / "mini.yaml").write_text(MINI_SUITE)
    common = ["--out", "run", "--cache-dir", "cache", "--no-progress", "--quiet", "--no-figures"]
    out = _facebench(["run", "mini.yaml", "--model", "broken-model", *common], site, tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert ("error: model plug-in 'broken-model' from distribution 'broken-import' (entry point broken-model = "
            "broken_mod:Broken in group facebench.models) does not load: ImportError: needs libfoo") in out.stderr
    assert "Traceback" not in out.stderr
    out = _facebench(["run", "mini.yaml", "--model", "twin", *common], site, tmp_path)
    assert out.returncode == 2 and "claimed by more than one entry point" in out.stderr, out.stderr
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.fixture
def site_on_path(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    for name in [m for m in sys.modules if m.startswith("fbt_")]:
        del sys.modules[name]


def test_plugin_in_process_loads_lazily_and_keeps_its_docstring(site_on_path):
    _dist_info(site_on_path, "fbt-dist", "facebench.test-widgets", ["w = fbt_widget:Widget"],
               {"fbt_widget": '''
                   class Widget:
                       """A widget from a plug-in"""
               '''})
    importlib.invalidate_caches()
    reg = Registry("widget", "facebench.test-widgets", {})
    assert "w" in reg and "fbt_widget" not in sys.modules  # scanning entry points imports nothing
    (entry,) = reg.entries()
    assert entry.source == "plugin:fbt-dist"
    assert entry.description == "A widget from a plug-in [plug-in from fbt-dist]"
    assert reg.get("w") is sys.modules["fbt_widget"].Widget


def test_plugin_that_is_not_a_class_or_factory(site_on_path):
    _dist_info(site_on_path, "fbt-dist", "facebench.test-widgets", ["w = fbt_const:VALUE"],
               {"fbt_const": "VALUE = 3\n"})
    importlib.invalidate_caches()
    reg = Registry("widget", "facebench.test-widgets", {})
    with pytest.raises(RegistryError, match=r"'w' from distribution 'fbt-dist' \(entry point w = fbt_const:VALUE "
                                            r"in group facebench.test-widgets\) is a int, not a class or factory"):
        reg.get("w")
    with pytest.warns(PluginWarning, match="not a class or factory"):
        assert reg.entries() == []


def test_decorator_alone_in_a_module_nobody_imports_is_not_found(site_on_path):
    (site_on_path / "fbt_decorated.py").write_text(textwrap.dedent('''
        from facebench.registry import MODELS

        @MODELS.register("fbt-decorated")
        class Decorated:
            """Registered by decorator only"""
    '''))
    importlib.invalidate_caches()
    with pytest.raises(RegistryError, match=r"Unknown model 'fbt-decorated'.*found only after its module is "
                                            r"imported.*entry point in group facebench.models"):
        MODELS.get("fbt-decorated")
    try:
        import fbt_decorated  # what the README says works: import the module yourself first

        assert MODELS.get("fbt-decorated") is fbt_decorated.Decorated
    finally:
        MODELS._entries.pop("fbt-decorated", None)


def test_decorator_cannot_take_a_builtin_name():
    with pytest.raises(RegistryError, match=r"model 'synth-cnn' is a built-in as "
                                            r"facebench.models.synth_cnn:SynthCNNAdapter; .* another name"):
        @MODELS.register("synth-cnn")
        class Impostor:
            pass
    entry = next(e for e in MODELS.entries() if e.name == "synth-cnn")
    assert entry.source == "builtin"
    assert MODELS.get("synth-cnn").__name__ == "SynthCNNAdapter"


def test_decorator_clash_and_re_registration():
    reg = Registry("widget", "facebench.test-none", {})

    def make():
        class Same:
            """One definition"""
        return Same

    first, again = make(), make()  # the same definition executed twice (a notebook cell re-run)
    reg.register("same")(first)
    reg.register("same")(again)
    assert reg.get("same") is again

    class Other:
        pass

    with pytest.raises(RegistryError, match=r"widget 'same' is registered \(decorator\) as .*make.<locals>.Same; "
                                            r".*Other cannot take its name"):
        reg.register("same")(Other)
    assert reg.get("same") is again


def test_no_builtin_is_registered_by_decorator():
    """Built-ins are listed once, in the registry's tables: a decorator in facebench's own code would be
    a second list (and a built-in added with the decorator alone would not be found)."""
    offenders = []
    for path in sorted((ROOT / "facebench").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*@\w+\.register\(", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "add built-ins to the tables of facebench/registry.py instead:\n" + "\n".join(offenders)
