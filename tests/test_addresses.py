"""checks.addresses: the fast path never accepts what email-validator rejects; counting and display."""

from __future__ import annotations

import random
from pathlib import Path

import email_validator
import pytest
from email_validator import EmailNotValidError, validate_email

from checks import addresses
from checks.addresses import address_problem, normalise, shown
from checks.model import Address, Mailing, RecipientList

ATOM = "abcxyzABZ0189_+-'="
LABEL = "abkthseKTH019-"
TLDS = ["se", "com", "c0m", "co1", "1", "x", "test", "local", "localhost", "arpa", "onion", "invalid", "example"]
LENGTHS = [0, 1, 2, 3, 4, 5, 8, 61, 62, 63, 64, 65]
NOISE = ["@", ".", "..", "-", "--", " ", "\t", "\r\n", '"', "<", ">", "[", "]", ",", ";", ":", "\x00", "а", "＠"]


def _run(rnd: random.Random, alphabet: str) -> str:
    # Mostly short runs, sometimes right at the 63/64-character limits.
    size = rnd.choice(LENGTHS) if rnd.random() < 0.15 else rnd.randint(1, 6)
    return "".join(rnd.choice(alphabet) for _ in range(size))


def _candidate(rnd: random.Random) -> str:
    local = ".".join(_run(rnd, ATOM) for _ in range(rnd.randint(1, 3)))
    labels = [_run(rnd, LABEL) for _ in range(rnd.randint(0, 3))]
    tld = rnd.choice(TLDS) if rnd.random() < 0.5 else _run(rnd, "abcdefghijklmnopqrstuvwxyz")
    address = f"{local}@{'.'.join([*labels, tld])}"
    if rnd.random() < 0.25:
        at = rnd.randrange(len(address) + 1)
        address = address[:at] + rnd.choice(NOISE) + address[at + rnd.randint(0, 1) :]
    if rnd.random() < 0.03:
        address += "."
    return address


def generated(count: int, seed: int = 20270210) -> list[str]:
    """Tricky near-addresses, the same every run."""
    rnd = random.Random(seed)
    return [_candidate(rnd) for _ in range(count)]


def validator_accepts(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def test_address_problem_never_accepts_what_the_validator_rejects() -> None:
    candidates = generated(4000)
    accepted = [a for a in candidates if address_problem(a) is None]
    wrongly = [a for a in accepted if not validator_accepts(a)]
    assert wrongly == []
    # The sample must exercise both verdicts to mean anything.
    assert 400 < len(accepted) < len(candidates) - 400


@pytest.mark.parametrize(
    "address",
    ["x@ab--cd.com", "x@xn--zz.se", "x@host.test", "x@kth.local", "x@kth.se.", "x@-kth.se", "x@kth.1"],
)
def test_forms_the_fast_pattern_would_let_through_are_judged_by_the_validator(address: str) -> None:
    assert not validator_accepts(address)
    assert address_problem(address) is not None


@pytest.mark.parametrize("address", ["аnna@kth.se", "anna@kth.sе", "anna＠kth.se", "an\u200bna@kth.se", "åsa@kth.se"])
def test_non_ascii_addresses_are_refused_naming_the_character(address: str) -> None:
    problem = address_problem(address)
    assert problem is not None
    char = next(c for c in address if not c.isascii())
    assert problem.startswith(f"It contains U+{ord(char):04X} (")


def test_a_huge_address_is_refused_without_the_validator() -> None:
    assert (
        address_problem("a" * 10_000_000 + "@kth.se")
        == "The email address is too long (10000007 characters; at most 254)."
    )


def test_valid_addresses_pass() -> None:
    for address in ["anna@kth.se", "Anna.Andersson+x@sub.KTH.se", "o'neil@kth.se", "x@xn--bcher-kva.example"]:
        assert address_problem(address) is None, address


def test_normalise_ignores_case_and_surrounding_space() -> None:
    assert normalise("  Anna@KTH.se ") == normalise("anna@kth.se")


def test_shown_escapes_control_and_invisible_characters() -> None:
    assert shown("a@kth.se\r\nBcc: x@evil.com") == r"'a@kth.se\r\nBcc: x@evil.com'"
    assert shown("x\u202ey") == r"'x\u202ey'"
    assert shown("a" * 100) == "'" + "a" * 80 + "...'"


def test_the_fast_path_leaves_every_special_use_domain_to_the_validator() -> None:
    # The fast path names them itself so that a list of common addresses never imports email-validator.
    assert set(addresses._SPECIAL_USE) == set(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _mailing(*lists: RecipientList) -> Mailing:
    return Mailing(id="m", root=Path("."), directory="mailings/m", doc=None, yaml_problem=None, lists=lists)


def _list(index: int, kind: str, name: str, *lines: str) -> RecipientList:
    entries = tuple(Address(a, f"{name}.txt", n) for n, a in enumerate(lines, start=1))
    return RecipientList(index, kind, name, addresses=entries, resolved=True)  # type: ignore[arg-type]


def test_each_address_is_judged_once_and_the_first_valid_spelling_is_the_recipient() -> None:
    # KELVIN SIGN lower-cases to an ASCII k: the invalid line must not hide the valid one after it.
    mailing = _mailing(
        _list(0, "special", "all-employees", "\u212aalle@kth.se", "Kalle@KTH.se", "anna@kth.se"),
        _list(1, "file", "extra", "kalle@kth.se", "bad@", "Anna@kth.se", "bo@kth.se"),
        _list(2, "file", "extra", "bo@kth.se"),
    )
    judged = mailing.recipients
    assert judged is mailing.recipients  # kept on the model: the rule, the count and the sender share it
    assert {key: entry.address for key, entry in judged.unique.items()} == {
        "kalle@kth.se": "Kalle@KTH.se",
        "anna@kth.se": "anna@kth.se",
        "bo@kth.se": "bo@kth.se",
    }
    assert judged.repeated == frozenset({2})
    assert [bad.entry.line for bad in judged.lists[0].invalid] == [1]
    assert judged.lists[0].duplicates == ()  # IT's list is not reported line by line
    assert [bad.entry.address for bad in judged.lists[1].invalid] == ["bad@"]
    assert [(d.entry.line, d.first.address, d.first_list.name) for d in judged.lists[1].duplicates] == [
        (1, "Kalle@KTH.se", "all-employees"),
        (3, "anna@kth.se", "all-employees"),
    ]
