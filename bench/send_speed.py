"""How fast `mailings send` delivers, compared in the same run with Postfix's own load generator.

Starts Postfix's smtp-sink on 127.0.0.1 (a free port), generates a temporary repository with two due
mailings, runs `mailings send` end to end for each (interpreter start, checks and send log included),
then has smtp-source send the same recipients with the same batch size and sessions to the same sink.

    .venv/bin/python bench/send_speed.py [--repeat N] [--keep]

Exit status: 0 when both targets are met, 1 when one is missed or a run fails, 2 when smtp-sink or
smtp-source is missing (Debian package `postfix`; nothing is installed here).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from math import ceil
from pathlib import Path
from typing import TextIO

import yaml
from sample import LOG_KEY, mailings_command, request, workdir, write_request

PROJECT = Path(__file__).resolve().parent.parent
TOOLS = ("smtp-sink", "smtp-source")
# Debian installs the Postfix test tools in sbin, which an ordinary user's PATH often lacks.
TOOL_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
NOW = "2027-02-10T09:05:00+01:00"
SINK_HOST = "127.0.0.1"
RUN_TIMEOUT_SECONDS = 600.0
SETTLE_SECONDS = 5.0
BATCH = 100  # recipients per bulk message
SESSIONS = 4  # connections, for both modes


@dataclass(frozen=True)
class Case:
    """One delivery mode: what is sent, and the rate it must reach relative to smtp-source."""

    name: str
    mailing_id: str
    mode: str
    recipients: int
    batch: int  # recipients per message
    sessions: int
    per_recipient: bool  # the rate counts recipients (bulk) or messages (individual)
    target: float

    @property
    def messages(self) -> int:
        return ceil(self.recipients / self.batch)

    @property
    def work(self) -> int:
        return self.recipients if self.per_recipient else self.messages

    @property
    def unit(self) -> str:
        return "rcpt/s" if self.per_recipient else "msg/s"


@dataclass(frozen=True)
class Result:
    case: Case
    ours_runs: tuple[float, ...]  # seconds per run
    source_runs: tuple[float, ...]

    # The best run of each side: other load on the machine only ever slows a run down, and it
    # strikes both sides at random (smtp-source's own runs vary by 2x on a busy machine).
    @property
    def ours(self) -> float:
        return min(self.ours_runs)

    @property
    def source(self) -> float:
        return min(self.source_runs)

    @property
    def ours_rate(self) -> float:
        return self.case.work / self.ours

    @property
    def source_rate(self) -> float:
        return self.case.work / self.source

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.source_rate

    @property
    def met(self) -> bool:
        return self.ratio >= self.case.target


class BenchError(Exception):
    """A run failed or delivered less than it should: the figures would mean nothing."""


def cases(bulk_recipients: int, individual_recipients: int) -> list[Case]:
    return [
        Case("bulk", "2027-02-10-bulk", "bulk", bulk_recipients, BATCH, SESSIONS, True, 1.0),
        Case("individual", "2027-02-10-individual", "individual", individual_recipients, 1, SESSIONS, False, 0.75),
    ]


# --- tools and the sink ---------------------------------------------------------------------------------------


def find_tools() -> dict[str, Path] | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *TOOL_DIRS])
    found = {tool: shutil.which(tool, path=path) for tool in TOOLS}
    if any(location is None for location in found.values()):
        return None
    return {tool: Path(location) for tool, location in found.items() if location}


def missing_tools_message() -> str:
    return (
        "send_speed: this benchmark needs Postfix's smtp-sink and smtp-source, which were not found "
        f"(searched PATH and {', '.join(TOOL_DIRS)}).\n"
        "Install the Debian package `postfix` (sudo apt-get install postfix); the benchmark installs nothing "
        "itself. The Postfix mail daemon is not needed: if the installation started it, stop it "
        "(sudo postfix stop) so it does not listen on port 25.\n"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((SINK_HOST, 0))
        return int(probe.getsockname()[1])


class Sink:
    """A running smtp-sink and its running message counter (-c), read from its output file."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, counter_file: Path) -> None:
        self.process = process
        self.port = port
        self.counter_file = counter_file

    def messages(self) -> int:
        counts = re.findall(rb"mesg=(\d+)", self.counter_file.read_bytes()[-200:])
        return int(counts[-1]) if counts else 0

    def wait_for(self, count: int) -> int:
        """The counter once it reaches *count*, or what it reached when the sink went quiet."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while (seen := self.messages()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen


@contextmanager
def smtp_sink(tool: Path, workdir: Path) -> Iterator[Sink]:
    # smtp-sink refuses to keep root privileges after binding; give it an unprivileged user.
    privileges = ["-u", "nobody"] if os.geteuid() == 0 and _user_exists("nobody") else []
    for _ in range(3):  # the free port can be taken between probing and binding it
        port = free_port()
        counter_file = workdir / f"sink-{port}.out"
        with counter_file.open("wb") as out:
            command = [str(tool), *privileges, "-c", f"{SINK_HOST}:{port}", "256"]
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            if _wait_listening(process, port):
                yield Sink(process, port, counter_file)
                return
        finally:
            _stop(process)
    raise BenchError(f"smtp-sink did not start: {counter_file.read_text(errors='replace').strip()}")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((SINK_HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the generated repository -----------------------------------------------------------------------------------

# A realistic body: Swedish letters, a link and an address, as the messages the university sends.
BODIES = {
    "sv": (
        "Hej!\n\n"
        "Från och med den 1 mars bokar alla anställda tjänsteresor i det nya\n"
        "bokningssystemet. Det gamla systemet stängs samma dag, och bokningar\n"
        "som redan är gjorda följer med.\n\n"
        "Vad du behöver göra:\n"
        "- logga in med ditt KTH-konto på https://www.kth.se/resor\n"
        "- kontrollera dina uppgifter och ditt kostnadsställe\n"
        "- boka som vanligt från den 1 mars\n\n"
        "Frågor besvaras av resesamordnarna på din skola, eller skriv till\n"
        "resor@kth.se.\n\n"
        "Med vänliga hälsningar\nKTH IT\n"
    ),
    "en": (
        "Hello!\n\n"
        "From 1 March, all employees book business travel in the new booking\n"
        "system. The old system closes on the same day; bookings already made\n"
        "are carried over.\n\n"
        "What you need to do:\n"
        "- sign in with your KTH account at https://www.kth.se/en/travel\n"
        "- check your details and your cost centre\n"
        "- book as usual from 1 March\n\n"
        "The travel coordinators at your school answer questions, or write to\n"
        "resor@kth.se.\n\n"
        "Kind regards\nKTH IT\n"
    ),
}


def recipients(case: Case) -> str:
    # Two domains and distinct local parts, like a real list; smtp-sink accepts every one.
    domains = ("kth.se", "ug.kth.se")
    return "".join(f"{case.name}.user{i:06d}@{domains[i % 2]}\n" for i in range(case.recipients))


def build_repository(root: Path, all_cases: Sequence[Case]) -> None:
    """The project's policy (its sending settings pinned to the benchmark's) and schema, and one mailing per case."""
    root.mkdir(parents=True)
    shutil.copytree(PROJECT / "schema", root / "schema")
    policy = yaml.safe_load((PROJECT / "policy.yaml").read_text(encoding="utf-8"))
    policy["sending"].update(delivery="bulk", batch_size=BATCH, connections=SESSIONS, rate_limit=None)
    (root / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False, allow_unicode=True), encoding="utf-8")
    for case in all_cases:
        fields = request(
            f"Benchmark of {case.name} delivery.",
            "All employees who book business travel",
            delivery={"mode": case.mode},
        )
        write_request(root / "mailings" / case.mailing_id, fields, BODIES, recipients(case))


def source_message(path: Path) -> None:
    """A message for smtp-source -F of the same size and shape as the one `mailings send` builds."""
    divider = "\n" + "-" * 40 + "\n\n"
    body = divider.join(BODIES.values())
    headers = (
        "From: KTH IT <noreply@kth.se>\n"
        "To: All employees who book business travel: ;\n"
        "Subject: =?utf-8?q?Nytt_system_f=C3=B6r_resebokning?= / New travel booking system\n"
        "Date: Wed, 10 Feb 2027 09:05:00 +0100\n"
        "Message-ID: <2027-02-10-bench.0001.0123456789abcdef@kth.se>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "Auto-Submitted: auto-generated\n"
        "Precedence: bulk\n"
        "X-Mailing-Id: 2027-02-10-bench\n"
    )
    path.write_text(headers + "\n" + body, encoding="utf-8")


# --- the runs -------------------------------------------------------------------------------------------------


def ours_env(sink: Sink, work: Path) -> dict[str, str]:
    """The sender's environment: the sink as relay, and bytecode cached as in an installed copy."""
    dropped = ("MAILINGS_SMTP_USERNAME", "MAILINGS_SMTP_PASSWORD", "MAILINGS_LOG_KEY", "PYTHONDONTWRITEBYTECODE")
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env.update(
        MAILINGS_LOG_KEY=LOG_KEY,
        MAILINGS_SMTP_HOST=SINK_HOST,
        MAILINGS_SMTP_PORT=str(sink.port),
        MAILINGS_SMTP_SECURITY="none",
        # Kept out of the source tree, which some set-ups keep free of bytecode (PYTHONDONTWRITEBYTECODE).
        PYTHONPYCACHEPREFIX=str(work / "pycache"),
    )
    return env


def warm_up(root: Path, env: dict[str, str]) -> None:
    """One untimed dry run, so that the timed runs find the bytecode compiled, as an installed copy does."""
    command = [*mailings_command(), "send", "--dry-run", "--root", str(root), "--now", NOW]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-2000:]
        raise BenchError(f"mailings send --dry-run exited with status {done.returncode}:\n{output}")


def run_ours(case: Case, root: Path, sink: Sink, env: dict[str, str]) -> float:
    command = [*mailings_command(), "send", "--root", str(root), "--now", NOW, "--only", case.mailing_id]
    return _timed(command, env, sink, case.messages, f"mailings send ({case.name})")


def run_source(case: Case, tool: Path, message: Path, sink: Sink) -> float:
    # -d keeps each session's connection for the next message, as the sender keeps its connections.
    command = [
        str(tool),
        "-d",
        "-s", str(case.sessions),
        "-r", str(case.batch),
        "-m", str(case.messages),
        "-F", str(message),
        "-M", "bench.invalid",
        "-f", "noreply@kth.se",
        "-t", "user@kth.se",
        f"{SINK_HOST}:{sink.port}",
    ]  # fmt: skip
    return _timed(command, dict(os.environ), sink, case.messages, f"smtp-source ({case.name})")


def _timed(command: list[str], env: dict[str, str], sink: Sink, messages: int, label: str) -> float:
    before = sink.messages()
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{label} did not finish within {RUN_TIMEOUT_SECONDS:.0f} s") from None
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-2000:]
        raise BenchError(f"{label} exited with status {done.returncode}:\n{output}")
    received = sink.wait_for(before + messages) - before
    if received != messages:
        raise BenchError(f"{label}: smtp-sink received {received} messages, expected {messages}")
    return elapsed


def measure(all_cases: Sequence[Case], tools: dict[str, Path], work: Path, sink: Sink, repeat: int) -> list[Result]:
    """Each round: a fresh repository with every mailing due, then per case our run and smtp-source's."""
    ours: dict[str, list[float]] = {c.name: [] for c in all_cases}
    source: dict[str, list[float]] = {c.name: [] for c in all_cases}
    message = work / "message.txt"
    source_message(message)
    env = ours_env(sink, work)
    for round_no in range(repeat):
        root = work / f"repo-{round_no}"
        build_repository(root, all_cases)
        if round_no == 0:
            warm_up(root, env)
        for case in all_cases:
            ours[case.name].append(run_ours(case, root, sink, env))
            source[case.name].append(run_source(case, tools["smtp-source"], message, sink))
        shutil.rmtree(root)
    return [Result(c, tuple(ours[c.name]), tuple(source[c.name])) for c in all_cases]


# --- report ---------------------------------------------------------------------------------------------------


def report(results: Sequence[Result], out: TextIO) -> None:
    header = f"{'mode':<11} {'work':>14} {'mailings send':>16} {'smtp-source':>16} {'ratio':>7} {'target':>8}  result"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for r in results:
        c = r.case
        work = f"{c.recipients:,} rcpt" if c.per_recipient else f"{c.messages:,} msg"
        out.write(
            f"{c.name:<11} {work:>14} {r.ours_rate:>9,.0f} {c.unit:<6} {r.source_rate:>9,.0f} {c.unit:<6} "
            f"{r.ratio:>6.2f}x {'>= ' + format(c.target, '.2f') + 'x':>8}  {'met' if r.met else 'MISSED'}\n"
        )
    out.write("\n")
    for r in results:
        out.write(
            f"{r.case.name}: mailings send {r.ours:.2f} s end to end ({_spread(r.ours_runs)}), "
            f"smtp-source {r.source:.2f} s ({_spread(r.source_runs)}); best of {len(r.ours_runs)}\n"
        )


def _spread(runs: Sequence[float]) -> str:
    return f"{min(runs):.2f}-{max(runs):.2f}" if len(runs) > 1 else "one run"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per side; the best counts (default: 5)")
    parser.add_argument("--bulk-recipients", type=int, default=50_000, help="default: 50000")
    parser.add_argument("--individual-recipients", type=int, default=10_000, help="default: 10000")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and print its path")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.bulk_recipients < 500 or args.individual_recipients < 500:
        parser.error(
            "--repeat must be at least 1 and each mailing needs at least 500 recipients (the policy's minimum)"
        )
    return args


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = parse_args(argv)
    # A benchmark stopped by timeout or a closed terminal still stops its sink and removes its files.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    tools = find_tools()
    if tools is None:
        err.write(missing_tools_message())
        return 2
    try:
        with workdir("mailings-send-bench-", args.keep, err) as work, smtp_sink(tools["smtp-sink"], work) as sink:
            results = measure(cases(args.bulk_recipients, args.individual_recipients), tools, work, sink, args.repeat)
    except BenchError as exc:
        err.write(f"send_speed: {exc}\n")
        return 1
    report(results, out)
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
