"""Pinned dependencies: the lock files with hashes, the actions pinned to commit SHAs, update automation."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from checks.yamlsafe import loads
from tests.conftest import PROJECT

REQUIREMENTS = PROJECT / "requirements"
WORKFLOWS = PROJECT / ".github" / "workflows"
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<action>\S+?)(?:\s+#\s*(?P<comment>.*))?$")


def locked(path: Path) -> dict[str, tuple[str, list[str], Marker | None]]:
    """A pip-compile lock file as name -> (version, hashes, marker)."""
    text = path.read_text(encoding="utf-8")
    entries: dict[str, tuple[str, list[str], Marker | None]] = {}
    for logical in re.sub(r"\\\n", " ", text).splitlines():
        line = logical.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"{path.name}: an option in the lock ({line!r}): index settings stay local"
        hashes = re.findall(r"--hash=(sha256:[0-9a-f]{64})", line)
        requirement = Requirement(re.sub(r"\s*--hash=\S+", "", line))
        (spec,) = list(requirement.specifier)
        assert spec.operator == "==", f"{path.name}: {requirement} is not pinned"
        entries[requirement.name.lower().replace("_", "-")] = (spec.version, hashes, requirement.marker)
    return entries


def project() -> dict[str, object]:
    return tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _name(requirement: Requirement) -> str:
    return canonicalize_name(requirement.name)  # PEP 503, as pip-compile writes it (flufl.bounce: flufl-bounce)


@pytest.mark.parametrize(("lock", "extras"), [("runtime.txt", ()), ("dev.txt", ("dev",))])
def test_the_lock_pins_every_dependency_with_hashes(lock: str, extras: tuple[str, ...]) -> None:
    entries = locked(REQUIREMENTS / lock)
    meta = project()
    wanted = [Requirement(text) for text in meta["dependencies"]]  # type: ignore[union-attr]
    for extra in extras:
        wanted += [Requirement(text) for text in meta["optional-dependencies"][extra]]  # type: ignore[index]
    wanted.append(Requirement("setuptools>=68"))  # the build backend, for --no-build-isolation
    for requirement in wanted:
        assert _name(requirement) in entries, f"{lock} lacks {requirement.name}: run `make lock`"
        version, _, _ = entries[_name(requirement)]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {requirement.name}=={version}, which pyproject.toml's {requirement} excludes: run `make lock`"
        )
    for name, (version, hashes, _) in entries.items():
        assert hashes, f"{lock}: {name}=={version} has no hash"


def test_the_runtime_lock_agrees_with_the_dev_lock() -> None:
    runtime, dev = locked(REQUIREMENTS / "runtime.txt"), locked(REQUIREMENTS / "dev.txt")
    for name, (version, _, _) in runtime.items():
        assert dev.get(name, (None,))[0] == version, f"{name}: runtime.txt pins {version}, dev.txt {dev.get(name)}"


def test_the_hook_pins_what_the_lock_pins() -> None:
    config = loads((PROJECT / ".pre-commit-config.yaml").read_text(encoding="utf-8")).data
    runtime = locked(REQUIREMENTS / "runtime.txt")
    for repo in config["repos"]:
        for hook in repo["hooks"]:
            for text in hook.get("additional_dependencies", []):
                requirement = Requirement(text)
                if _name(requirement) not in runtime:
                    continue  # a tool of its own (ruff, actionlint), not one of the project's dependencies
                (spec,) = list(requirement.specifier)
                assert spec.version == runtime[_name(requirement)][0], (
                    f"the {hook['id']} hook pins {requirement}, the lock {runtime[_name(requirement)][0]}"
                )


def test_make_installs_from_the_lock_alone() -> None:
    makefile = (PROJECT / "Makefile").read_text(encoding="utf-8")
    assert "pip install --quiet --require-hashes --no-deps -r requirements/dev.txt" in makefile
    # the project itself: no dependency resolution, no build backend downloaded
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in makefile
    assert not re.search(r"pip install(?![^\n]*(--require-hashes|--no-deps|pip-tools==))", makefile)


def test_workflows_install_from_the_lock_alone() -> None:
    for path in sorted(WORKFLOWS.glob("*.y*ml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if "pip install" in line:
                assert "--no-deps" in line, f"{path.name}: {line.strip()} resolves dependencies outside the lock"
                assert "--require-hashes" in line or "-e ." in line, f"{path.name}: {line.strip()}"


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    seen = 0
    for path in sorted(WORKFLOWS.glob("*.y*ml")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = USES.match(line)
            if not match or match["action"].startswith("./"):
                continue
            seen += 1
            where = f"{path.name}:{number}"
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", match["action"]), f"{where}: not a commit SHA"
            assert match["comment"] and re.fullmatch(r"v\d+(\.\d+)*", match["comment"]), f"{where}: no version"
    assert seen >= 4


def test_dependabot_watches_the_lock_and_the_actions() -> None:
    config = loads((PROJECT / ".github" / "dependabot.yml").read_text(encoding="utf-8")).data
    assert config["version"] == 2
    ecosystems = {update["package-ecosystem"]: update for update in config["updates"]}
    assert set(ecosystems) >= {"pip", "github-actions"}
    assert all(update["directory"] == "/" and update["schedule"]["interval"] for update in ecosystems.values())


def test_a_run_with_nothing_due_installs_nothing() -> None:
    """The scheduled dispatch restores its tools from a cache keyed on the lock; it installs only on a miss."""
    dispatch = loads((WORKFLOWS / "dispatch.yml").read_text(encoding="utf-8")).data
    (job,) = dispatch["jobs"].values()
    steps = job["steps"]
    (cache,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/cache@")]
    assert "requirements/runtime.txt" in cache["with"]["key"] and "python-version" in cache["with"]["key"]
    install = [s for s in steps if "--require-hashes" in str(s.get("run", ""))]
    assert install and all(s.get("if") == "steps.venv.outputs.cache-hit != 'true'" for s in install)
    assert steps.index(cache) < steps.index(install[0])


def test_the_lock_files_name_their_source() -> None:
    for lock in ("runtime.txt", "dev.txt"):
        head = (REQUIREMENTS / lock).read_text(encoding="utf-8")[:600]
        assert "pip-compile" in head and "pyproject.toml requirements/build.in" in head, lock
