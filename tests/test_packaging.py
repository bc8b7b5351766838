"""The wheel: one top-level name, ``sse_batcher``, holding the repository's folders and nothing else.

An application with its own ``server.py`` or ``workers/`` must neither shadow this package nor be
shadowed by it, so pyproject.toml maps batcher/, server/, workers/, frontend/ and constants.py into
``sse_batcher`` and leaves bench/ and tests/ out. These tests build the wheel from a copy of the
checkout, install it into a fresh virtual environment next to such an application, and run the
README's first example there against the session's PostgreSQL.

Nothing is downloaded. The wheel is built with the setuptools of the running environment
(``--no-build-isolation``), and the fresh environment reaches the dependencies installed for the
tests through a ``.pth`` file that lists their site-packages directories. A ``.pth`` line that names
a directory adds it to ``sys.path`` without running the ``.pth`` files inside it, so the editable
install of the test environment stays inactive there; the tests check that ``sse_batcher`` is
imported from the fresh environment.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Repository folder -> its place in the package; constants.py and sse_batcher/__init__.py join them.
MAPPED_FOLDERS = ("batcher", "server", "workers", "frontend")

# Names the package must never import as top-level modules: an application may own any of them.
GENERIC_NAMES = {"batcher", "bench", "constants", "frontend", "server", "tests", "workers"}

# Top-level entries of the checkout the build never needs: caches, environments, earlier builds.
_NOT_SOURCES = re.compile(r"^(\..*|build|dist|.*\.egg-info)$")

# What an event type looks like (the rule emit() enforces), to tell types from the other strings printed.
_EVENT_TYPE = re.compile(r"[A-Z0-9_]{1,64}")

_PROBE = """\
import importlib
import json
import pkgutil
import sys

import sse_batcher

for info in pkgutil.walk_packages(sse_batcher.__path__, "sse_batcher."):
    if not info.name.endswith(".__main__"):
        importlib.import_module(info.name)
generic = {names!r}
imported_by_the_package = sorted(name for name in sys.modules if name.partition(".")[0] in generic)

import server
import workers
from sse_batcher.server.app.factory import FRONTEND_DIR

print(json.dumps({{
    "imported_by_the_package": imported_by_the_package,
    "editable_finders": sorted(name for name in sys.modules if "__editable__" in name),
    "server": [server.NAME, server.__file__],
    "workers": [workers.NAME, workers.__file__],
    "sse_batcher": sse_batcher.__file__,
    "frontend": str(FRONTEND_DIR),
}}))
"""


@dataclass(frozen=True, slots=True)
class Built:
    """The wheel and the copy of the checkout it was built from."""

    wheel: Path
    sources: Path

    def names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.namelist()

    def read(self, name: str) -> str:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.read(name).decode()

    def dist_info(self) -> str:
        distribution, version = self.wheel.name.split("-")[:2]
        return f"{distribution}-{version}.dist-info"


@dataclass(frozen=True, slots=True)
class Installed:
    """A fresh virtual environment holding the wheel, and an application directory beside it."""

    venv: Path
    site_packages: Path
    app: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _environment(**extra: str) -> dict[str, str]:
    """The caller's environment without the variables that point Python at other code (PYTHONPATH...).

    No bytecode is written: the fresh environment imports from the test environment's directories.
    """
    kept = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    return kept | {"PYTHONDONTWRITEBYTECODE": "1"} | extra


def _run(args: list[str | Path], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_environment(**env), capture_output=True, text=True, timeout=120
    )


def _checked(process: subprocess.CompletedProcess[str]) -> str:
    command = " ".join(process.args)
    assert process.returncode == 0, f"{command} exited {process.returncode}:\n{process.stdout}\n{process.stderr}"
    return process.stdout


def _differences(expected: set[str], shipped: set[str]) -> str:
    return f"missing from the wheel: {sorted(expected - shipped)}, not in the checkout: {sorted(shipped - expected)}"


def _ignored(directory: str, names: list[str]) -> set[str]:
    top = Path(directory) == ROOT
    return {n for n in names if n == "__pycache__" or (top and _NOT_SOURCES.match(n) is not None)}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The wheel, built once from a copy of the checkout (a build in place would reuse a stale build/)."""
    sources = tmp_path_factory.mktemp("sources") / "sse-batcher"
    shutil.copytree(ROOT, sources, symlinks=True, ignore=_ignored)
    out = sources.parent / "wheel"
    pip: list[str | Path] = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"]
    offline = ["--no-build-isolation", "--check-build-dependencies"]
    _checked(_run([*pip, *offline, "--wheel-dir", out, sources], cwd=sources.parent))
    (wheel,) = out.glob("*.whl")
    return Built(wheel=wheel, sources=sources)


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel in a fresh virtual environment that reaches the test environment's dependencies.

    The wheel goes in before the ``.pth`` file, so pip sees an empty environment, not the editable
    install the ``.pth`` file makes visible. pip itself comes from the test environment
    (``pip --python``): ensurepip would add seconds and nothing under test.
    """
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    _checked(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root))
    python = venv / "bin" / "python"
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python]
    _checked(_run([*pip, "install", "--quiet", "--no-deps", "--no-index", built.wheel], cwd=root))
    probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(_checked(_run([python, "-c", probe], cwd=root)).strip())
    # Every site-packages directory of the running interpreter: with --system-site-packages some
    # dependencies live in the base interpreter's.
    test_environment = [d for d in [*site.getsitepackages(), site.getusersitepackages()] if d in sys.path]
    (site_packages / "_sse_batcher_test_dependencies.pth").write_text("\n".join(test_environment) + "\n")
    app = root / "app"
    (app / "workers").mkdir(parents=True)
    (app / "server.py").write_text('NAME = "app server"\n')
    (app / "workers" / "__init__.py").write_text('NAME = "app workers"\n')
    return Installed(venv=venv, site_packages=site_packages, app=app)


def test_the_wheel_installs_one_top_level_name(built: Built) -> None:
    top_level = {name.partition("/")[0] for name in built.names()}
    assert top_level == {"sse_batcher", built.dist_info()}, f"unexpected top-level names: {sorted(top_level)}"


def test_the_wheel_holds_every_module_of_the_mapped_folders_and_no_other(built: Built) -> None:
    expected = {"sse_batcher/__init__.py", "sse_batcher/constants.py"}
    for folder in MAPPED_FOLDERS:
        for path in (built.sources / folder).rglob("*.py"):
            expected.add(f"sse_batcher/{path.relative_to(built.sources).as_posix()}")
    shipped = {name for name in built.names() if name.endswith(".py")}

    listed = set(tomllib.loads((built.sources / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    missing_packages = sorted({name.rpartition("/")[0].replace("/", ".") for name in expected - shipped} - listed)
    assert not missing_packages, f"add to [tool.setuptools] packages in pyproject.toml: {missing_packages}"
    assert shipped == expected, _differences(expected, shipped)


def test_the_wheel_ships_every_dashboard_file(built: Built) -> None:
    frontend = built.sources / "frontend"
    expected = {
        f"sse_batcher/frontend/{path.relative_to(frontend).as_posix()}"
        for path in frontend.rglob("*")
        if path.is_file() and path.suffix != ".py" and "__pycache__" not in path.parts
    }
    for pattern in ("*.html", "*.css", "*.js", "panels/*.js", "vendor/*"):
        assert list(frontend.glob(pattern)), f"frontend/{pattern} matches nothing in the checkout"
    shipped = {n for n in built.names() if n.startswith("sse_batcher/frontend/") and not n.endswith(".py")}
    assert shipped == expected, _differences(expected, shipped)


def test_the_console_script_runs_the_cli(built: Built, installed: Installed) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(built.read(f"{built.dist_info()}/entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == {"sse-batcher": "sse_batcher.server.cli:main"}

    help_text = _checked(_run([installed.venv / "bin" / "sse-batcher", "--help"], cwd=installed.app))
    assert help_text.startswith("usage: sse-batcher")


def test_the_installed_package_and_an_applications_own_server_and_workers_do_not_shadow_each_other(
    installed: Installed,
) -> None:
    (installed.app / "probe.py").write_text(_PROBE.format(names=sorted(GENERIC_NAMES)))
    seen = json.loads(_checked(_run([installed.python, "probe.py"], cwd=installed.app)))

    assert seen["imported_by_the_package"] == [], "the package imports names an application may own"
    assert seen["server"][0] == "app server" and _inside(seen["server"][1], installed.app)
    assert seen["workers"][0] == "app workers" and _inside(seen["workers"][1], installed.app)
    assert seen["editable_finders"] == [], "the test environment's editable install is active in the fresh one"
    assert _inside(seen["sse_batcher"], installed.site_packages), f"sse_batcher came from {seen['sse_batcher']}"
    frontend = Path(seen["frontend"])
    assert _inside(seen["frontend"], installed.site_packages) and (frontend / "index.html").is_file(), frontend


def _inside(path: str, directory: Path) -> bool:
    return Path(path).resolve().is_relative_to(directory.resolve())


def _first_python_block(readme: str) -> str:
    match = re.search(r"^```python\n(.*?)^```", readme, re.DOTALL | re.MULTILINE)
    assert match, "README.md has no ```python block"
    return match.group(1)


def _printed_types(output: str) -> set[str]:
    """The event types in the lines the example prints as Python lists (of types, or of tuples holding one)."""
    types: set[str] = set()
    for line in output.splitlines():
        try:
            value = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, list):
            types.update(s for s in _strings(value) if _EVENT_TYPE.fullmatch(s))
    return types


def _strings(value: object) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return set().union(*(_strings(item) for item in value))
    return set()


async def test_the_readme_first_example_runs_against_the_installed_package(installed: Installed, dsn: str) -> None:
    example = installed.app / "readme_example.py"
    example.write_text(_first_python_block((ROOT / "README.md").read_text()))
    with anyio.fail_after(60):
        finished = await anyio.run_process(
            [str(installed.python), str(example)],
            cwd=installed.app,
            env=_environment(DATABASE_URL=dsn),
            check=False,
        )
    stdout, stderr = finished.stdout.decode(), finished.stderr.decode()
    assert finished.returncode == 0, f"the example exited {finished.returncode}:\n{stdout}\n{stderr}"
    types = _printed_types(stdout)
    assert types & {"JOB_STARTED", "JOBS_BATCH_STARTED"}, f"no start among the printed types:\n{stdout}"
    assert types & {"JOB_COMPLETED", "JOBS_BATCH_COMPLETED"}, f"no completion among the printed types:\n{stdout}"


def test_bench_modules_run_from_the_checkout() -> None:
    usage = _checked(_run([sys.executable, "-m", "bench.emit", "--help"], cwd=ROOT))
    assert usage.startswith("usage:")
