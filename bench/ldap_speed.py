"""How much reading a special list of 20,000 people from the user directory adds to a send.

Starts OpenLDAP's slapd on 127.0.0.1 (LDAPS, a test CA, OpenLDAP's default size limit of 500 in force, the
dispatch job's bind allowed to page past it) with 20,000 students and 5,500 staff, as the tests do. Then, in fresh
copies of one generated repository, times `mailings send` end to end for one mailing to all students twice: with
the list resolved from the directory (`source: {ldap: ...}`), and with the same addresses from a file
(`source: {env: ...}`), both into a Maildir outbox. The difference is what the directory costs a send.

    .venv/bin/python bench/ldap_speed.py [--repeat N] [--keep]

Exit status: 0 when the best LDAP run is less than 2 s slower than the best file run, 1 when it is not or a run
fails, 2 when slapd is not installed (Debian package `slapd`; `make test` installs it as root).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import yaml
from sample import BODIES, LOG_KEY, mailings_command, request, workdir, write_request

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tests.sender.ldapserver import PEOPLE, STUDENTS_FILTER, Slapd, find_slapd  # noqa: E402

NOW = "2027-02-10T09:05:00+01:00"
MAILING = "2027-02-10-students"
TARGET_SECONDS = 2.0
RUN_TIMEOUT_SECONDS = 300.0


def build_repository(root: Path, source: Mapping[str, object]) -> None:
    """The project's policy with all-students from *source*, its schema, and one mailing to all students."""
    root.mkdir(parents=True)
    shutil.copytree(PROJECT / "schema", root / "schema")
    policy = yaml.safe_load((PROJECT / "policy.yaml").read_text(encoding="utf-8"))
    policy["special_lists"]["all-students"] = {"name": "All students", "approximate_size": 20_000, "source": source}
    (root / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False, allow_unicode=True), encoding="utf-8")
    fields = request("Benchmark of a special list.", "All students")
    fields["recipients"]["lists"] = [{"file": "recipients.txt"}, {"special": "all-students"}]
    write_request(root / "mailings" / MAILING, fields, BODIES, "".join(f"own{i}@kth.se\n" for i in range(10)))


def timed_send(template: Path, work: Path, env: Mapping[str, str], round_number: int, name: str) -> float:
    """One `mailings send` in a fresh copy of *template*; its wall-clock seconds."""
    root = work / f"{name}-{round_number}"
    shutil.copytree(template, root)
    command = [*mailings_command(), "send", "--root", str(root), "--now", NOW, "--outbox", str(root / "outbox")]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or "sent: 20004 accepted" not in done.stdout:
        raise SystemExit(f"ldap_speed: the {name} run failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind; the best counts (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    binary = find_slapd()
    if binary is None:
        sys.stderr.write("ldap_speed: slapd is not installed: apt-get install slapd (make test does so as root)\n")
        return 2
    with workdir("ldap-speed-", args.keep) as work:
        server = Slapd.create(binary, work / "slapd")
        try:
            server.start()
            expected = server.people.expected_students()
            listed = work / "students.txt"
            listed.write_text("\n".join(expected) + "\n", encoding="utf-8")
            ldap = {"ldap": {"base": PEOPLE, "filter": STUDENTS_FILTER, "attribute": "mail"}}
            build_repository(work / "ldap-template", ldap)
            build_repository(work / "file-template", {"env": "BENCH_STUDENTS"})
            base = {k: v for k, v in os.environ.items() if not k.startswith("MAILINGS_")}
            base["MAILINGS_LOG_KEY"] = LOG_KEY
            base["PYTHONPYCACHEPREFIX"] = str(work / "pycache")  # compiled as in an installed copy, not in the tree
            envs = {"ldap": {**base, **server.env()}, "file": {**base, "BENCH_STUDENTS": str(listed)}}
            for name, env in envs.items():  # once untimed: bytecode, and the disk cache warm for both
                timed_send(work / f"{name}-template", work, env, 0, name)
            runs: dict[str, list[float]] = {"ldap": [], "file": []}
            for round_number in range(1, args.repeat + 1):
                for name, env in envs.items():
                    runs[name].append(timed_send(work / f"{name}-template", work, env, round_number, name))
            alone = resolve_alone(work / "ldap-template", server, args.repeat)
        finally:
            server.stop()
    best = {name: min(times) for name, times in runs.items()}
    added = best["ldap"] - best["file"]
    print(f"{'source':<8} {'best':>8}  runs (mailings send, 20,004 recipients, {len(expected)} from all-students)")
    for name, times in runs.items():
        print(f"{name:<8} {best[name]:>7.2f}s  {', '.join(f'{t:.2f}' for t in times)}")
    print(f"resolving the list alone, in one process: best {min(alone):.2f}s ({', '.join(f'{t:.2f}' for t in alone)})")
    met = added < TARGET_SECONDS
    verdict = "met" if met else "MISSED"
    print(f"the directory adds {added:.2f} s to a send (target: under {TARGET_SECONDS:.0f} s): {verdict}")
    return 0 if met else 1


def resolve_alone(root: Path, server: Slapd, repeat: int) -> list[float]:
    """Seconds to resolve all-students from the directory (connect, bind, page, clean), without the send."""
    from checks.policy import load_policy
    from sender.lists import resolve

    special = load_policy(root).special_lists["all-students"]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        resolve(special, server.env(), root)
        times.append(time.perf_counter() - started)
    return times


if __name__ == "__main__":
    sys.exit(main())
