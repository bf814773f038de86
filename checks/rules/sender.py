"""[sender] The sender is a unit (and role) of the policy; a from_address is an internal address.

``sender.unit`` must be a unit id of the policy and ``sender.role``, when
given, a role id. ``crisis: true`` needs a crisis role (the crisis management
group). A ``from_address`` must be a valid address on an internal domain or a
subdomain of one, compared after IDNA normalisation, so look-alikes such as
``kth.se.evil.com``, ``kth-se.com`` or Cyrillic letters are not internal.

Passes::

    sender: {unit: it, role: university-director}
    from_address: it-support@kth.se

Fails::

    sender: {unit: IT, role: rector}      # ids are lower-case; rector is no role of the policy
    crisis: true                          # needs role: crisis-management-group
    from_address: it-support@kth.se.evil.com
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping

from checks.addresses import address_problem, domain_of, is_internal_domain, shown
from checks.model import Context, Finding, Mailing, Stage, error, warning
from checks.policy import Policy

ID = "sender"
STAGES: tuple[Stage, ...] = ("submit", "send")


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    unit = mailing.get("sender", "unit", kind=str)
    if unit is not None and unit not in policy.units:
        yield error(mailing.at("sender", "unit"), _unknown("sender.unit", unit, "an organisational unit", policy.units))
    role = mailing.get("sender", "role", kind=str)
    if role is not None and role not in policy.roles:
        yield error(mailing.at("sender", "role"), _unknown("sender.role", role, "a role", policy.roles))
    if role is not None and role in policy.roles and context.stage == "submit" and not mailing.dispatched:
        yield from _claim(mailing, role, policy, context)
    if mailing.is_crisis and role not in policy.crisis_roles:
        yield error(mailing.at("crisis"), _crisis(policy))
    from_address = mailing.get("from_address", kind=str)
    if from_address is not None:
        yield from _from_address(mailing, from_address, policy)


def claim_confirmed(mailing: Mailing, policy: Policy, context: Context) -> bool:
    """Whether the request's sender.role is claimed by an author policy.yaml lists for that role (--author)."""
    role = mailing.get("sender", "role", kind=str)
    return role in policy.roles and context.author is not None and policy.may_claim(role, context.author)


def _claim(mailing: Mailing, role: str, policy: Policy, context: Context) -> Iterator[Finding]:
    """A role is privileged: only the authors policy.yaml lists for it may claim it (the pull request's author,
    --author); without an author, the reviewer must confirm the sender."""
    loc = mailing.at("sender", "role")
    name = policy.roles[role]
    if context.author is None:
        yield warning(
            loc,
            f"sender.role {role} says that the {name} sends this mailing: the reviewer must confirm that with the "
            f"{name} before approving (the pull-request check confirms it by the pull request's author)",
        )
    elif not policy.may_claim(role, context.author):
        listed = sorted(policy.role_authors.get(role, ()))
        who = f"only {', '.join(listed)} may claim it" if listed else "policy.yaml lists nobody who may claim it"
        yield error(
            loc,
            f"sender.role {role} ({name}) is claimed by {shown(context.author)}, who is not listed for it in "
            f"policy.yaml (roles.{role}.authors; {who}): the {name}'s office opens such a pull request itself; "
            "otherwise remove sender.role",
        )


def _unknown(field: str, value: str, what: str, known: Mapping[str, str]) -> str:
    guess = difflib.get_close_matches(value.lower(), list(known), n=1)
    hint = f" (did you mean '{guess[0]}'?)" if guess else ""
    return f"{field} {shown(value)} is not {what} of the policy; use one of: {', '.join(sorted(known))}{hint}"


def _crisis(policy: Policy) -> str:
    if not policy.crisis_roles:
        return "crisis: true is not available: the policy names no crisis role; remove it"
    roles = " or ".join(sorted(policy.crisis_roles))
    return (
        f"crisis: true is only for the crisis management group: set sender.role to {roles} if it sends this "
        "mailing, otherwise remove crisis: true (crisis mailings skip the lead time and the blackout periods)"
    )


def _from_address(mailing: Mailing, address: str, policy: Policy) -> Iterator[Finding]:
    loc = mailing.at("from_address")
    fallback = f"or leave from_address out to send from {policy.default_from_address}"
    problem = address_problem(address)
    if problem is not None:
        yield error(
            loc,
            f"from_address {shown(address)} is not a valid e-mail address: {problem} Write the bare address, "
            f"{fallback}",
        )
    elif not is_internal_domain(domain_of(address), policy):
        domains = ", ".join(policy.internal_domains)
        yield error(
            loc,
            f"from_address {shown(address)} is not on an internal domain ({domains} or a subdomain); "
            f"use an active address of your unit there, {fallback}",
        )
