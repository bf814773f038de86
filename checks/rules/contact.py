"""[contact] The contact person can be reached: a valid e-mail address, and preferably a phone number.

The policy asks for the name and e-mail address of a contact person for
questions, preferably also a telephone number. An invalid e-mail address is
an error; a missing phone, or one without any digits, is a warning. Replies
to the mailing go to the contact person, or to ``reply_to`` when the request
gives one, which must be a valid address too (an error otherwise).

Passes::

    contact:
      name: Anna Andersson
      email: anna.andersson@kth.se
      phone: "+46 8 790 60 00"

Fails::

    contact:
      name: Anna Andersson
      email: anna.andersson(at)kth.se    # error: not an address
      phone: ask the switchboard          # warning: no number
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.addresses import address_problem, shown
from checks.model import Context, Finding, Mailing, Stage, error, warning
from checks.policy import Policy

ID = "contact"
STAGES: tuple[Stage, ...] = ("submit", "send")

PHONE_EXAMPLE = 'phone: "+46 8 790 60 00"'


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    # Replies go to reply_to whatever the contact says, so it is judged even when the contact is missing.
    reply_to = mailing.get("reply_to", kind=str)
    if reply_to is not None and (problem := address_problem(reply_to)) is not None:
        yield error(
            mailing.at("reply_to"),
            f"reply_to {shown(reply_to)} is not a valid e-mail address: {problem} "
            "Give the address replies should go to, or leave reply_to out to send them to the contact person",
        )
    contact = mailing.get("contact", kind=dict)
    if contact is None:
        return  # the schema rule reports a missing or malformed contact
    email = mailing.get("contact", "email", kind=str)
    if email is not None:
        problem = address_problem(email)
        if problem is not None:
            yield error(
                mailing.at("contact", "email"),
                f"contact.email {shown(email)} is not a valid e-mail address: {problem} "
                "Give the contact person's own address, e.g. anna.andersson@kth.se",
            )
    if "phone" not in contact:
        yield warning(
            mailing.at("contact"),
            "contact.phone is missing; the policy asks for a telephone number for questions about the mailing: "
            f"add one, e.g. {PHONE_EXAMPLE}",
        )
        return
    phone = mailing.get("contact", "phone", kind=str)
    if phone is not None and not any(c.isdecimal() for c in phone):
        yield warning(
            mailing.at("contact", "phone"),
            f"contact.phone {shown(phone)} has no digits; give a number people can call, e.g. {PHONE_EXAMPLE}",
        )
