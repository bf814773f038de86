"""Ten years of history: what the commands that run every 15 minutes cost, and how big the repository gets.

Generates, in a temporary directory, a git repository with the project's policy.yaml and schema/ and, year
after year, 150 mailings a year (500 to 30,000 recipients each, log-uniform; a quarter sent one message per
recipient, the rest in batches of 100; one in ten finished by a second run): for each, the commit that
approves the request (mailing.yaml, two bodies, and a list file for those under 5,000 recipients; the larger
ones use IT's special lists, which are not in git) and the sender's commits of its send log, written with the
sender's own encoders and keyed hashes (sender.journal: EventLines, encode, summary_event) and committed as
the dispatch job does (a run's log on main, and with the run that finishes a mailing its line in the index of
finished mailings, sender.finished; the claim branches it deletes are not kept). Commits are written with
`git fast-import`, with the dates they would have.

After the first year and after the last it runs `git gc --prune=now`, reads `git count-objects -v` and checks
out main as it stands into a work tree of its own; then, with three scheduled requests added to each (the
mailings still to come, the same in both), it times as subprocesses, interpreter start included, one run of
each command on each history in turn (so that other load on the machine falls on both alike):

- `mailings send --now <end of the year>` with nothing due (a Maildir outbox; nothing is sent);
- `mailings status --now <end of the year>`;
- `mailings plan` of one of the three requests, as the pull-request check runs it for each request (its mailings
  around it are looked up among every request in the history).

    .venv/bin/python bench/history.py [--years 10] [--per-year 150] [--repeat 21] [--keep] [--seed 1]

Exit status 0 when the three commands cost the same on the last year's history as on the first's within the noise
of the measurement (the median of the rounds' differences, ten years less one, at most 5 % or 15 ms), 1 when
not, 2 when a run fails. It takes a few minutes (most of it git compressing about a gigabyte of logs). Nothing
is installed, nothing goes over the network.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from sample import mailings_command, workdir  # noqa: E402

from sender.finished import INDEX_FILE, entry_line  # noqa: E402
from sender.journal import EventLines, encode, make_hasher, replay_lines, stamp, summary_event  # noqa: E402
from sender.plan import batch_key  # noqa: E402

ZONE = ZoneInfo("Europe/Stockholm")
FIRST_YEAR = 2027
BENCH_KEY = "history-bench-key-" + "5" * 32  # a log key for the generated logs (and the timed runs)
SPECIAL_FROM = 5000  # mailings this large use IT's special lists, not a list file in git
BATCH = 100
RUN_TIMEOUT_SECONDS = 600.0
# "The same": the median of the rounds' differences (ten years less one year, timed one after the other) at most
# this much (the larger of the two), about the spread of repeated runs of one command on one history on a 2-core
# machine (the middle half of them spans 5 ms on a quiet one, 10-16 ms with other work on it).
SAME_RATIO = 0.05
SAME_SECONDS = 0.015
BOT = "mailings-bot <mailings-bot@users.noreply.github.com>"
REQUESTER = "Requester <requester@kth.se>"
BODY = {
    "sv": "Hej!\n\n{what}\n\nLäs mer på https://www.kth.se/nyheter/{n}\n\nMed vänliga hälsningar\nKTH\n",
    "en": "Hello!\n\n{what}\n\nRead more at https://www.kth.se/en/news/{n}\n\nKind regards\nKTH\n",
}
COMMANDS = ("send", "status", "plan")  # timed on each history, in this order
TOPICS = ("the new travel system", "the staff survey", "Research Day", "the library's opening hours", "a fire drill")


@dataclass(frozen=True)
class Planned:
    id: str
    send_at: datetime
    recipients: int
    individual: bool
    two_runs: bool
    index: int


@dataclass
class Stats:
    mailings: int = 0
    recipients: int = 0
    log_bytes: int = 0
    commits: int = 0


def plan_year(year: int, per_year: int, rng: random.Random, start_index: int) -> list[Planned]:
    """*per_year* mailings spread over the working days of *year*, at 09:00-15:00."""
    days = [date(year, 1, 1) + timedelta(days=d) for d in range(365)]
    working = [d for d in days if d.weekday() < 5 and d.month != 7]
    chosen = sorted(rng.choices(working, k=per_year))
    planned = []
    for number, day in enumerate(chosen):
        send_at = datetime(day.year, day.month, day.day, rng.choice((9, 10, 13, 15)), 0, tzinfo=ZONE)
        size = int(math.exp(rng.uniform(math.log(500), math.log(30000))))
        slug = f"{day.isoformat()}-m{start_index + number:05d}"
        planned.append(Planned(slug, send_at, size, rng.random() < 0.25, rng.random() < 0.1, start_index + number))
    return planned


def addresses(mailing: Planned) -> list[str]:
    # Overlapping populations, as real lists are: staff and students recur across mailings.
    base = (mailing.index * 7919) % 40000
    return [f"person{(base + i) % 60000:05d}@kth.se" for i in range(mailing.recipients)]


def mailing_yaml(mailing: Planned) -> bytes:
    lists = (
        [{"special": "all-students" if mailing.recipients > 15000 else "all-employees"}]
        if mailing.recipients >= SPECIAL_FROM
        else [{"file": "recipients.csv"}]
    )
    fields = {
        "send_at": mailing.send_at.strftime("%Y-%m-%d %H:%M"),
        "purpose": f"Tell the recipients about {TOPICS[mailing.index % len(TOPICS)]} (mailing {mailing.index}).",
        "sender": {"unit": "it"},
        "contact": {"name": "Anna Andersson", "email": "anna.andersson@kth.se", "phone": "+46 8 790 60 00"},
        "recipients": {"group": "Generated recipients", "why": "They need to know.", "lists": lists},
        "delivery": {"mode": "individual" if mailing.individual else "bulk"},
        "languages": ["sv", "en"],
        "subject": {"sv": f"Nyhet {mailing.index}", "en": f"News {mailing.index}"},
    }
    return json.dumps(fields, ensure_ascii=False, indent=2).encode("utf-8")  # JSON is YAML


def request_files(mailing: Planned) -> dict[str, bytes]:
    what = f"This is about {TOPICS[mailing.index % len(TOPICS)]}, message {mailing.index}."
    files = {
        "mailing.yaml": mailing_yaml(mailing),
        "body.sv.txt": BODY["sv"].format(what=what, n=mailing.index).encode("utf-8"),
        "body.en.txt": BODY["en"].format(what=what, n=mailing.index).encode("utf-8"),
    }
    if mailing.recipients < SPECIAL_FROM:
        rows = "".join(f"Person {a[6:11]},{a}\n" for a in addresses(mailing))
        files["recipients.csv"] = ("name,email\n" + rows).encode("utf-8")
    return files


def send_logs(mailing: Planned, rng: random.Random) -> list[bytes]:
    """The mailing's send log as main holds it after each run (the last one ends with its summary)."""
    hasher = make_hasher(BENCH_KEY)
    hashes = hasher.of_all_normalised(addresses(mailing))
    failed = set(rng.sample(range(len(hashes)), k=max(1, len(hashes) // 200)))
    second = set(rng.sample(range(len(hashes)), k=max(1, len(hashes) // 100))) if mailing.two_runs else set()
    size = 1 if mailing.individual else BATCH
    rate = 80.0 if mailing.individual else 40.0  # messages a second
    out = bytearray()
    versions: list[bytes] = []
    moment = mailing.send_at + timedelta(minutes=rng.randint(1, 14))
    runs = ["first", "second"] if second else ["first"]
    for number, run in enumerate(runs):
        run_id = f"{mailing.index:06x}{number:06x}"
        lines = EventLines(run_id)
        todo = [i for i in range(len(hashes)) if (i in second) == (run == "second")]
        claim = {"event": "claim", "time": stamp(moment), "run": run_id, "digest": "sha256:" + "ab" * 32}
        claim |= {"recipients": len(hashes), "pending": len(todo)}
        start = {"event": "start", "time": stamp(moment), "run": run_id, "recipients": len(hashes)}
        start |= {"pending": len(todo), "mode": "individual" if mailing.individual else "bulk", "batch_size": BATCH}
        start |= {"connections": 4, "hash": hasher.scheme, "key_check": hasher.key_check}
        out += encode(claim) + encode(start)
        for at in range(0, len(todo), size):
            chunk = todo[at : at + size]
            batch = [hashes[i] for i in chunk]
            key = batch_key(batch)
            moment += timedelta(seconds=1 / rate)
            now = stamp(moment)
            out += lines.attempt(now, key, batch)
            ok = [h for i, h in zip(chunk, batch, strict=True) if i not in failed]
            if ok:
                out += lines.accepted(now, key, ok, 250)
            for i in chunk:
                if i in failed:
                    event = {"event": "failed", "time": now, "run": run_id, "batch": key, "rcpt": hashes[i]}
                    event |= {"code": 550, "message": "5.1.1 <address>: Recipient address rejected: User unknown"}
                    out += encode(event)
            if run == "first" and second and at + size >= len(todo):
                deferred = {"event": "deferred", "time": now, "run": run_id, "batch": key}
                deferred |= {"rcpt": [hashes[i] for i in sorted(second)], "code": 452, "message": "4.5.3 quota"}
                out += encode(deferred)
        last_run = run == runs[-1]
        pending = 0 if last_run else len(second)
        failed_now = failed if last_run else failed - second
        end = {"event": "end", "time": stamp(moment), "run": run_id}
        end["accepted"] = sum(1 for i in range(len(hashes)) if i not in failed and (last_run or i not in second))
        end |= {"failed": len(failed_now), "pending": pending, "unknown": 0, "attempted": -(-len(todo) // size)}
        end["complete"] = pending == 0
        out += encode(end)
        if pending == 0:
            done = replay_lines(bytes(out).split(b"\n"))
            state = "sent-with-failures" if failed else "sent"
            send_at = mailing.send_at.isoformat(timespec="minutes")
            out += encode(summary_event(bytes(out), done, state, stamp(moment), send_at))
        versions.append(bytes(out))
        moment += timedelta(minutes=15)
    return versions


def fast_import(repo: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["git", "fast-import", "--quiet"], cwd=repo, stdin=subprocess.PIPE)


def commit(
    stream: IO[bytes], who: str, when: datetime, message: str, files: dict[str, bytes | str], *, first: bool = False
) -> None:
    """One commit on main of *files* (path to content, or to the id of a blob already in the repository)."""
    seconds = int(when.timestamp())
    offset = when.strftime("%z")
    head = f"commit refs/heads/main\nauthor {who} {seconds} {offset}\ncommitter {who} {seconds} {offset}\n"
    stream.write(head.encode())
    text = message.encode("utf-8")
    stream.write(b"data %d\n%s\n" % (len(text), text))
    if first:
        stream.write(b"from refs/heads/main^0\n")
    for path, data in files.items():
        if isinstance(data, str):
            stream.write(f"M 100644 {data} {path}\n".encode())
            continue
        stream.write(f"M 100644 inline {path}\n".encode())
        stream.write(b"data %d\n%s\n" % (len(data), data))
    stream.write(b"\n")


def loose_blob(repo: Path, data: bytes) -> str:
    """*data* as a loose object of *repo*; its id. (git fast-import stores a blob whole or as a delta of the blob
    written just before it, a send log here; git gc searches deltas for loose objects, as a push to GitHub does
    for each version of the index against the one before, so the index is stored as it would be.)"""
    command = ["git", "hash-object", "-w", "--stdin"]
    return subprocess.run(command, cwd=repo, input=data, capture_output=True, check=True).stdout.decode().strip()


def seed(repo: Path) -> None:
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(repo)], check=True)
    files = {"policy.yaml": (PROJECT / "policy.yaml").read_bytes()}
    for path in sorted((PROJECT / "schema").rglob("*")):
        if path.is_file():
            files[str(path.relative_to(PROJECT))] = path.read_bytes()
    files["mailings/README.md"] = b"Mailing requests, one directory each.\n"
    process = fast_import(repo)
    assert process.stdin is not None
    start = datetime(FIRST_YEAR - 1, 12, 1, 9, tzinfo=ZONE)
    seconds = int(start.timestamp())
    head = f"commit refs/heads/main\nauthor {REQUESTER} {seconds} +0100\ncommitter {REQUESTER} {seconds} +0100\n"
    process.stdin.write(head.encode() + b"data 6\nStart\n")
    for path, data in files.items():
        process.stdin.write(f"M 100644 inline {path}\n".encode() + b"data %d\n%s\n" % (len(data), data))
    process.stdin.write(b"\n")
    process.stdin.close()
    if process.wait() != 0:
        raise SystemExit("git fast-import failed")


def generate(repo: Path, years: range, per_year: int, rng: random.Random, stats: Stats) -> None:
    """Commit *years* of mailings onto main, in the order they happened."""
    process = fast_import(repo)
    assert process.stdin is not None
    first = True
    index = bytearray((repo / INDEX_FILE).read_bytes() if (repo / INDEX_FILE).exists() else b"")
    for year in years:
        for mailing in plan_year(year, per_year, rng, stats.mailings):
            approved = mailing.send_at - timedelta(days=rng.randint(8, 20))
            files = {f"mailings/{mailing.id}/{name}": data for name, data in request_files(mailing).items()}
            commit(process.stdin, REQUESTER, approved, f"Approve {mailing.id} (#{mailing.index})", files, first=first)
            first = False
            logs = send_logs(mailing, rng)
            for run, log in enumerate(logs):
                when = mailing.send_at + timedelta(minutes=20 + 15 * run)
                message = f"Send log: {mailing.id} run {run + 1}"
                files: dict[str, bytes | str] = {f"mailings/{mailing.id}/sendlog.jsonl": log}
                if run == len(logs) - 1:  # the run that finished it indexes it, in the same commit
                    summary = json.loads(log.rstrip(b"\n").rsplit(b"\n", 1)[-1])
                    index += entry_line(mailing.id, len(log), summary["state"], summary["failed"], summary["send_at"])
                    files[INDEX_FILE] = loose_blob(repo, bytes(index))
                commit(process.stdin, BOT, when, message, files)
                stats.commits += 1
                stats.log_bytes += len(log) if run == 0 else 0
            stats.commits += 1
            stats.mailings += 1
            stats.recipients += mailing.recipients
    process.stdin.close()
    if process.wait() != 0:
        raise SystemExit("git fast-import failed")
    subprocess.run(["git", "checkout", "--quiet", "--force", "main"], cwd=repo, check=True)


def repository_size(repo: Path) -> dict[str, int]:
    subprocess.run(["git", "gc", "--quiet", "--prune=now"], cwd=repo, check=True)
    out = subprocess.run(["git", "count-objects", "-v"], cwd=repo, check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split(": ") for line in out.splitlines())}


def upcoming(repo: Path, now: datetime) -> Iterator[Path]:
    """Three requests still to be sent (in the work tree only), the same at every measurement."""
    for number in range(3):
        send_at = now + timedelta(days=10 + number)
        mailing = Planned(f"{send_at.date().isoformat()}-upcoming-{number}", send_at, 2000, False, False, 10**6)
        directory = repo / "mailings" / mailing.id
        directory.mkdir(parents=True)
        for name, data in request_files(mailing).items():
            (directory / name).write_bytes(data)
        yield directory


@dataclass
class Measure:
    label: str
    stats: Stats
    size: dict[str, int]
    root: Path  # a work tree of the history as it stood then
    year: int
    times: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in COMMANDS})


def snapshot(repo: Path, label: str, stats: Stats, year: int, tmp: Path) -> Measure:
    """The repository's size now (after gc), and a work tree of main as it is now to time the commands on."""
    size = repository_size(repo)
    root = tmp / label.replace(" ", "-")
    subprocess.run(["git", "worktree", "add", "--quiet", "--detach", str(root), "main"], cwd=repo, check=True)
    return Measure(label, Stats(**vars(stats)), size, root, year)


def time_interleaved(measures: list[Measure], repeat: int, tmp: Path) -> None:
    """Time the commands on every history, one run of each in turn, so that the load other work puts on the
    machine meanwhile falls on all of them alike; each with the same three requests still to come."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILINGS_")}
    env |= {"MAILINGS_LOG_KEY": BENCH_KEY, "PYTHONPATH": str(PROJECT)}
    outbox = tmp / "outbox"
    commands = []
    for measure in measures:
        now = datetime(measure.year, 12, 20, 12, 0, tzinfo=ZONE)
        requests = list(upcoming(measure.root, now))
        when, root = now.isoformat(timespec="minutes"), str(measure.root)
        timed = {
            "send": ["send", "--root", root, "--now", when, "--outbox", str(outbox)],
            "status": ["status", "--root", root, "--now", when],
            "plan": ["plan", "--root", root, "--submitted", now.date().isoformat(), str(requests[0])],
        }
        commands += [(measure.times[name], [*mailings_command(), *timed[name]]) for name in COMMANDS]
    for round_ in range(repeat + 1):
        for times, command in commands:
            began = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
            if round_:  # the first round warms the caches
                times.append(time.perf_counter() - began)
            if done.returncode != 0:
                print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{' '.join(command)} failed with status {done.returncode}")
    if outbox.exists() and any(p.is_file() for p in outbox.rglob("*")):
        raise SystemExit("a run with nothing due sent something")


def report(results: list[Measure]) -> bool:
    print(
        f"{'history':<10} {'mailings':>8} {'recipients':>12} {'commits':>8} {'logs (raw)':>11} "
        f"{'repository':>11}  {'send, nothing due: median':<27}{'status: median':<23}{'plan: median':<20}"
    )
    for r in results:
        pack = (r.size.get("size-pack", 0) + r.size.get("size", 0)) / 1024
        print(
            f"{r.label:<10} {r.stats.mailings:>8,} {r.stats.recipients:>12,} {r.stats.commits:>8,} "
            f"{r.stats.log_bytes / 2**20:>9.0f} MB {pack:>8.1f} MB "
            + " ".join(
                f"{statistics.median(r.times[name]):>6.3f} s (best {min(r.times[name]):.3f})" for name in COMMANDS
            )
        )
    first, last = results[0], results[-1]
    same = True
    for name in COMMANDS:
        before, after = first.times[name], last.times[name]
        a, b = statistics.median(before), statistics.median(after)
        # Each round times the two histories one right after the other: their difference, round by round, leaves
        # out most of what other work on the machine adds to both.
        growth = statistics.median(y - x for x, y in zip(before, after, strict=True))
        spread = statistics.quantiles(before, n=4) if len(before) >= 2 else [a, a, a]
        ok = growth <= max(a * SAME_RATIO, SAME_SECONDS)
        same &= ok
        print(
            f"{name}: median {b:.3f} s on {last.label} against {a:.3f} s on {first.label} (best {min(after):.3f} s "
            f"against {min(before):.3f} s); ten years less one, round by round: median {growth * 1000:+.1f} ms "
            f"({growth / a * 100:+.1f} %), limit {max(a * SAME_RATIO, SAME_SECONDS) * 1000:.0f} ms; the one year's "
            f"middle half of runs spans {(spread[2] - spread[0]) * 1000:.0f} ms: "
            + (f"the same (within {SAME_RATIO:.0%} or {SAME_SECONDS * 1000:.0f} ms)" if ok else "GROWS")
        )
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--per-year", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=21, help="timed runs of each command (median reported)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the generated repository")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    stats = Stats()
    results = []
    with workdir("mailings-history-", args.keep, sys.stderr) as tmp:
        repo = tmp / "repo"
        seed(repo)
        began = time.perf_counter()
        generate(repo, range(FIRST_YEAR, FIRST_YEAR + 1), args.per_year, rng, stats)
        print(f"generated year 1 in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        results.append(snapshot(repo, "1 year", stats, FIRST_YEAR, tmp))
        if args.years > 1:
            began = time.perf_counter()
            generate(repo, range(FIRST_YEAR + 1, FIRST_YEAR + args.years), args.per_year, rng, stats)
            print(f"generated years 2-{args.years} in {time.perf_counter() - began:.0f} s", file=sys.stderr)
            last = FIRST_YEAR + args.years - 1
            results.append(snapshot(repo, f"{args.years} years", stats, last, tmp))
        time_interleaved(results, args.repeat, tmp)
        return 0 if report(results) else 1


if __name__ == "__main__":
    sys.exit(main())
