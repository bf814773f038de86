"""[sender] unit and role ids of the policy, the crisis role, and an internal from_address."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Repo

UNITS = "abe, cbh, cbl, eecs, hr, it, itm, management, sci"
ROLES = "crisis-management-group, dean, deputy-president, hr-manager, president, university-director, vice-dean"
# Keys the tests add land after `subject` in the written mailing.yaml: line 20 (21 when sender gains a role).
ADDED = "mailing.yaml:20:1"
FALLBACK = "or leave from_address out to send from noreply@kth.se"


def sender(repo: Repo, **changes: Any) -> list[str]:
    repo.add(changes=changes)
    return repo.messages(rule="sender")


# --- unit and role -----------------------------------------------------------------------------------------------


def test_a_unit_and_role_of_the_policy_pass(repo: Repo) -> None:
    listing(repo, "university-director", "[anna-andersson]")
    repo.add(changes={"sender": {"unit": "management", "role": "university-director"}})
    assert repo.messages(rule="sender", author="anna-andersson") == []


def test_a_unit_alone_passes(repo: Repo) -> None:
    assert sender(repo) == []


def test_an_unknown_unit_lists_the_valid_ids(repo: Repo) -> None:
    assert sender(repo, sender={"unit": "schools"}) == [
        f"mailing.yaml:4:3: error [sender] sender.unit 'schools' is not an organisational unit of the policy; "
        f"use one of: {UNITS}"
    ]


def test_a_unit_in_the_wrong_case_suggests_the_id(repo: Repo) -> None:
    assert sender(repo, sender={"unit": "ITM"}) == [
        f"mailing.yaml:4:3: error [sender] sender.unit 'ITM' is not an organisational unit of the policy; "
        f"use one of: {UNITS} (did you mean 'itm'?)"
    ]


def test_an_unknown_role_lists_the_valid_ids(repo: Repo) -> None:
    assert sender(repo, sender={"unit": "management", "role": "rector"}) == [
        f"mailing.yaml:5:3: error [sender] sender.role 'rector' is not a role of the policy; use one of: {ROLES}"
    ]


def test_a_role_name_instead_of_its_id_suggests_the_id(repo: Repo) -> None:
    found = sender(repo, sender={"unit": "management", "role": "Vice Dean"})
    assert found == [
        f"mailing.yaml:5:3: error [sender] sender.role 'Vice Dean' is not a role of the policy; use one of: {ROLES} "
        "(did you mean 'vice-dean'?)"
    ]


def test_units_come_from_the_policy(repo: Repo) -> None:
    policy = repo.root / "policy.yaml"
    policy.write_text(policy.read_text().replace("  sci: {name: KTH School of Engineering Sciences}\n", ""))
    assert sender(repo, sender={"unit": "sci"})[0].startswith(
        "mailing.yaml:4:3: error [sender] sender.unit 'sci' is not an organisational unit of the policy"
    )


# --- crisis ------------------------------------------------------------------------------------------------------

CRISIS = (
    "error [sender] crisis: true is only for the crisis management group: set sender.role to "
    "crisis-management-group if it sends this mailing, otherwise remove crisis: true (crisis mailings skip the "
    "lead time and the blackout periods)"
)


def test_crisis_by_the_crisis_management_group_passes(repo: Repo) -> None:
    listing(repo, "crisis-management-group", "[crisis-desk]")
    repo.add(changes={"crisis": True, "sender": {"unit": "management", "role": "crisis-management-group"}})
    assert repo.messages(rule="sender", author="crisis-desk") == []


def test_crisis_without_a_role_is_an_error(repo: Repo) -> None:
    assert sender(repo, crisis=True) == [f"{ADDED}: {CRISIS}"]


def test_crisis_with_another_top_role_is_an_error(repo: Repo) -> None:
    listing(repo, "president", "[anna-andersson]")
    repo.add(changes={"crisis": True, "sender": {"unit": "management", "role": "president"}})
    assert repo.messages(rule="sender", author="anna-andersson") == [f"mailing.yaml:21:1: {CRISIS}"]


def test_crisis_false_needs_no_role(repo: Repo) -> None:
    assert sender(repo, crisis=False) == []


# --- from_address ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["it-support@kth.se", "IT-Support@KTH.SE", "info@eecs.kth.se", "a@sub.it.kth.se"])
def test_internal_from_addresses_pass(repo: Repo, address: str) -> None:
    assert sender(repo, from_address=address) == []


def external(address: str) -> str:
    return (
        f"{ADDED}: error [sender] from_address '{address}' is not on an internal domain (kth.se or a subdomain); "
        f"use an active address of your unit there, {FALLBACK}"
    )


@pytest.mark.parametrize(
    "address",
    [
        "it@kth.se.evil.com",  # the internal name as a subdomain of another
        "it@kth-se.com",
        "it@notkth.se",
        "it@kth.com",
        "it@gmail.com",
        "it@xn--kh-rmc.se",  # kтh.se with a Cyrillic т, in its xn-- form
        "it@xn--kt-5wc.se",  # ktһ.se with a Cyrillic һ
        "it@kth.xn--s-jtb",  # kth.sе with a Cyrillic е
    ],
)
def test_look_alike_and_external_domains_are_errors(repo: Repo, address: str) -> None:
    assert sender(repo, from_address=address) == [external(address)]


def test_a_look_alike_letter_in_the_domain_is_an_invalid_address(repo: Repo) -> None:
    assert sender(repo, from_address="it@kth.sе") == [
        f"{ADDED}: error [sender] from_address 'it@kth.sе' is not a valid e-mail address: It contains U+0435 "
        "(CYRILLIC SMALL LETTER IE), which is not a plain ASCII character; retype the address (write an "
        f"international domain in its xn-- form). Write the bare address, {FALLBACK}"
    ]


@pytest.mark.parametrize(
    "address",
    ["KTH IT <it@kth.se>", "it@@kth.se", "it kth.se", "it@kth.se.", "it@kth.se\nBcc: x@evil.com", "it@kth.se,a@kth.se"],
)
def test_invalid_from_addresses_are_errors(repo: Repo, address: str) -> None:
    found = sender(repo, from_address=address)
    assert len(found) == 1
    assert found[0].startswith(f"{ADDED}: error [sender] from_address '")
    assert " is not a valid e-mail address: " in found[0]
    assert found[0].endswith(f"Write the bare address, {FALLBACK}")
    assert "\n" not in found[0]


def test_the_internal_domain_comes_from_the_policy(repo: Repo) -> None:
    policy = repo.root / "policy.yaml"
    policy.write_text(policy.read_text().replace("internal_domains: [kth.se]", "internal_domains: [uu.se]"))
    assert sender(repo, from_address="it@kth.se") == [
        f"{ADDED}: error [sender] from_address 'it@kth.se' is not on an internal domain (uu.se or a subdomain); "
        "use an active address of your unit there, or leave from_address out to send from noreply@kth.se"
    ]


def test_a_from_address_of_the_wrong_type_is_left_to_the_schema(repo: Repo) -> None:
    assert sender(repo, from_address=42, sender={"unit": 7}) == []


# --- who may claim a role ----------------------------------------------------------------------------------------

CLAIM = {"unit": "management", "role": "president"}
UNCONFIRMED = (
    "mailing.yaml:5:3: warning [sender] sender.role president says that the President sends this mailing: the "
    "reviewer must confirm that with the President before approving (the pull-request check confirms it by the pull "
    "request's author)"
)


def listing(repo: Repo, role: str, authors: str) -> None:
    """Give *role* in the repository's policy.yaml the *authors* (a YAML flow list)."""
    path = repo.root / "policy.yaml"
    text = path.read_text(encoding="utf-8")
    marker = f"  {role}: {{name: "
    start = text.index(marker)
    end = text.index("authors: []}", start)
    path.write_text(text[:end] + f"authors: {authors}}}" + text[end + len("authors: []}") :], encoding="utf-8")


def test_a_listed_author_claims_a_role_silently(repo: Repo) -> None:
    listing(repo, "president", "[anna-andersson, KTH-Office]")
    repo.add(changes={"sender": CLAIM})
    assert repo.messages(rule="sender", author="anna-andersson") == []
    # GitHub compares user names without regard to case
    assert repo.messages(rule="sender", author="kth-office") == []


def test_a_claim_by_another_author_is_an_error_naming_who_may_claim(repo: Repo) -> None:
    listing(repo, "president", "[anna-andersson]")
    repo.add(changes={"sender": CLAIM})
    assert repo.messages(rule="sender", author="mallory") == [
        "mailing.yaml:5:3: error [sender] sender.role president (President) is claimed by 'mallory', who is not "
        "listed for it in policy.yaml (roles.president.authors; only anna-andersson may claim it): the President's "
        "office opens such a pull request itself; otherwise remove sender.role"
    ]


def test_an_author_listed_for_another_role_cannot_claim_this_one(repo: Repo) -> None:
    listing(repo, "dean", "[anna-andersson]")
    repo.add(changes={"sender": CLAIM})
    assert [m.split(" [sender] ")[0] for m in repo.messages(rule="sender", author="anna-andersson")] == [
        "mailing.yaml:5:3: error"
    ]


def test_a_role_nobody_is_listed_for_cannot_be_claimed(repo: Repo) -> None:
    repo.add(changes={"sender": CLAIM})
    (found,) = repo.messages(rule="sender", author="anna-andersson")
    assert "policy.yaml lists nobody who may claim it" in found and found.startswith("mailing.yaml:5:3: error")


def test_the_crisis_group_is_privileged_too(repo: Repo) -> None:
    listing(repo, "crisis-management-group", "[crisis-desk]")
    repo.add(changes={"crisis": True, "sender": {"unit": "management", "role": "crisis-management-group"}})
    assert repo.messages(rule="sender", author="crisis-desk") == []
    (found,) = repo.messages(rule="sender", author="someone-else")
    assert "(Crisis Management Group) is claimed by 'someone-else'" in found


def test_without_an_author_a_claim_is_a_warning_for_the_reviewer(repo: Repo) -> None:
    listing(repo, "president", "[anna-andersson]")
    repo.add(changes={"sender": CLAIM})
    assert repo.messages(rule="sender") == [UNCONFIRMED]


def test_no_role_no_claim(repo: Repo) -> None:
    repo.add()
    assert repo.messages(rule="sender", author="mallory") == []


def test_a_claim_is_judged_at_submission_only(repo: Repo) -> None:
    repo.add(changes={"sender": CLAIM})
    assert repo.messages(rule="sender", stage="send") == []
