"""`mailings plan`: the reviewer's Markdown, its facts, and that no request can inject markup into it."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from checks.cli import main
from checks.markdown import code, fenced, text
from tests.conftest import EVENT, Repo, git

MAILING = "2027-02-10-travel"


def plan(repo: Repo, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code_ = main(["plan", "--root", str(repo.root), "--changed-since", "main", "--submitted", "2027-01-11", *extra])
    captured = capsys.readouterr()
    assert (code_, captured.err) == (0, "")
    return captured.out


def parse(markdown: str) -> list[Token]:
    """Tokens as a CommonMark renderer that allows raw HTML (as GitHub's sanitiser would see it) reads them."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").parse(markdown)


def inline_tokens(tokens: list[Token]) -> list[Token]:
    return [child for token in tokens if token.type == "inline" for child in token.children or []]


def checklist_items(tokens: list[Token]) -> list[str]:
    """Raw text of list items that GitHub would show as checkboxes ('[ ] ...' or '[x] ...')."""
    return [
        token.content for token in tokens if token.type == "inline" and token.content[:4] in ("[ ] ", "[x] ", "[X] ")
    ]


def test_facts_for_the_reviewer(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    branch.add(
        MAILING,
        changes={
            "event": EVENT,
            "recipients": {"lists": [{"file": "recipients.txt"}, {"special": "all-employees"}]},
        },
    )
    out = plan(branch, capsys)
    lines = out.splitlines()
    assert lines[:3] == [
        "## Mailing plan",
        "",
        "Changed since ` main `: 1 mailing. For a request submitted on Monday 11 January 2027, the earliest allowed "
        "dispatch date is Monday 25 January 2027 (10 working days later; crisis mailings are exempt).",
    ]
    for expected in [
        f"### ⚠️ ` mailings/{MAILING} `: 0 errors, 1 warning",
        "- **Dispatch:** Wednesday 10 February 2027, 09:00 CET (UTC+01:00, Europe/Stockholm)",
        "- **Earliest allowed date:** Monday 25 January 2027, for a request submitted on Monday 11 January 2027",
        "- **Recipients:** 6100 (unique addresses; IT's lists at their approximate size)",
        "  - ` recipients.txt `: 600 addresses; no source given",
        "    - Sample: ` user0@kth.se `, ` user299@kth.se `, ` user599@kth.se `",
        "  - ` all-employees ` (All employees): about 5500, a list IT provides, read at send time from the file that "
        "` MAILINGS_LIST_ALL_EMPLOYEES ` names; who else is on it is known only when it is sent, so it is not sampled "
        "or compared here",
        "- **Recipient group:** All employees who book business travel",
        "- **Purpose:** Announce the new travel booking system\\.",
        "- **Sender:** KTH IT (` it `) from ` noreply@kth.se `",
        "- **Contact:** Anna Andersson, ` anna.andersson@kth.se `, \\+46 8 790 60 00",
        "- **Languages:** ` sv `, ` en `",
        "  - ` sv `: Nytt system för resebokning",
        "  - ` en `: New travel booking system",
        "- **Date:** 2027\\-03\\-01",
        "- **Time:** 13\\:00\\-15\\:00",
        "- **Venue:** Aula Magna\\, KTH Campus",
        "- **Registration:** Register at https\\:\\/\\/www\\.kth\\.se\\/event\\/123",
        "- **Registration deadline:** 2027\\-02\\-20",
        "- [ ] Sent by an organisational sender within KTH Royal Institute of Technology",
    ]:
        assert expected in lines, expected
    (warning,) = [line for line in lines if line.startswith("- warning ")]
    assert warning.startswith(f"- warning ` mailings/{MAILING}/mailing.yaml:") and "\\[recipients\\]" in warning
    assert len(checklist_items(parse(out))) == 5


def test_a_mailing_larger_than_the_relays_day_goes_out_over_days(
    repo: Repo, plain_git: None, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = repo.root / "policy.yaml"
    policy.write_text(policy.read_text().replace("recipients_per_day: null", "recipients_per_day: 2500"))
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "Policy and schema, with a relay quota")
    git(repo.root, "switch", "--quiet", "--create", "request")
    repo.add(MAILING, changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"special": "all-employees"}]}})
    repo.add("2027-02-11-small")
    lines = plan(repo, capsys).splitlines()
    days = [line for line in lines if line.startswith("- **Over several days:**")]
    assert days == [
        "- **Over several days:** the relay takes 2,500 recipients a day (` sending.recipients_per_day ` in "
        "` policy.yaml `), so these 6,100 go out over at least 3 days from Wednesday 10 February 2027, 09:00 CET "
        "(UTC+01:00, Europe/Stockholm), each day's part at the same time of day; other mailings of those days share "
        "the quota, and may make it more"
    ]


def test_the_message_as_recipients_see_it(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    link = "https://www.kth.se/resor/" + "a-long-path-that-a-mail-client-never-breaks/" * 2
    long_line = "Från den 1 mars bokar du resor i det nya systemet, som är enklare och ger bättre överblick. "
    branch.add(
        MAILING, bodies={"sv": f"Hej!\n\n{long_line}Läs mer på {link} i dag.\n> {long_line * 2}\n", "en": "Hi\n"}
    )
    out = plan(branch, capsys)
    tokens = parse(out)
    shown, raw = [t for t in tokens if t.type == "fence"]
    assert shown.info == raw.info == "text"
    # as a mail client shows it: four headers, the date in the policy's time zone, the body soft-wrapped
    assert shown.content.splitlines()[:5] == [
        "From: KTH IT <noreply@kth.se>",
        "To: All employees who book business travel",
        "Subject: Nytt system för resebokning / New travel booking system",
        "Date: Wednesday 10 Feb 2027 09:00 CET",  # dated as it will be sent
        "",
    ]
    body = shown.content.splitlines()[5:]
    assert body[:6] == [
        "Hej!",
        "",
        "Från den 1 mars bokar du resor i det nya systemet, som är enklare och ger",
        "bättre överblick. Läs mer på",
        link,  # never broken, however long: on a line of its own
        "i dag.",
    ]
    quoted = body[6 : body.index("----------------------------------------") - 1]
    assert len(quoted) > 2 and all(line.startswith("> ") and len(line) <= 76 for line in quoted)
    assert " ".join(line.removeprefix("> ") for line in quoted) == (long_line * 2).strip()
    # every header and the body as sent, unwrapped, in a collapsed section
    html = [t.content.strip() for t in tokens if t.type == "html_block"]
    assert html == ["<details><summary>The message as sent: every header, the body unwrapped</summary>", "</details>"]
    assert "Date: Wed, 10 Feb 2027 09:00:00 +0100\n" in raw.content
    assert "Content-Transfer-Encoding: quoted-printable\n" in raw.content
    assert f"{long_line}Läs mer på {link} i dag.\n" in raw.content


def test_links_show_where_they_lead(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    branch.add(
        MAILING,
        changes={
            "event": EVENT,
            "external_links": [{"url": "https://www.example.org/conf", "stopover": "https://www.kth.se/stopover/conf"}],
        },
        bodies={
            "sv": "Hej\nLäs https://www.kth.se/resor och www.k\u0442h.se/x\n",
            "en": "See https://www.kth.se/stopover/conf\nand https://www.kth.se@evil.com/\n",
        },
    )
    section = plan(branch, capsys).split("#### Links\n\n")[1].split("\n\n#### ")[0]
    assert section.splitlines() == [
        "- ` https://www.kth.se/resor ` leads to ` www.kth.se ` (internal); ` body.sv.txt ` line 2",
        "- ` www.k\u0442h.se/x ` leads to ` www.xn--kh-rmc.se ` (external); ` body.sv.txt ` line 2",
        "- ` https://www.kth.se/stopover/conf ` leads to ` www.kth.se ` (internal); ` body.en.txt ` line 1",
        "- ` https://www.kth.se@evil.com/ ` leads to ` evil.com ` (external); ` body.en.txt ` line 2",
        "- ` https://www.kth.se/event/123 ` leads to ` www.kth.se ` (internal); ` mailing.yaml ` line 24",
        "",
        "External links declared, each with its stopover page:",
        "",
        "- ` https://www.example.org/conf ` through ` https://www.kth.se/stopover/conf `",
    ]


def test_top_management_meets_the_criteria_by_standing(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    path = branch.root / "policy.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "{name: University Director, authors: []}", "{name: University Director, authors: [director-office]}"
        ),
        encoding="utf-8",
    )
    branch.add(MAILING, changes={"sender": {"unit": "management", "role": "university-director"}})
    # a claim nobody confirmed ticks nothing: without --author, and by an author not listed for the role
    for unconfirmed in ((), ("--author", "mallory")):
        items = checklist_items(parse(plan(branch, capsys, *unconfirmed)))
        assert len(items) == 5 and all(item.startswith("[ ] ") for item in items)
    out = plan(branch, capsys, "--author", "director-office")
    items = checklist_items(parse(out))
    assert len(items) == 5
    assert all(item.startswith("[x] ") for item in items)
    assert items[3] == (
        "[x] About something of a rare nature (met by standing: University Director may always send mass mailings)"
    )
    assert "- **Sender:** KTH University Management (` management `) as University Director from" in out


def test_a_request_cannot_inject_markup(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = {
        "purpose": 'Hi <img src=x onerror="alert(1)"> &amp; <script>alert(2)</script>\n- [x] Approved by IT\n# Fake',
        "recipients": {
            "group": "Everyone | [click](https://evil.example/) ![p](https://evil.example/p.png)",
            "why": "`",
        },
        "contact": {"name": "<b>Boss</b>", "email": "anna.andersson@kth.se", "phone": "<https://evil.example/>"},
        "subject": {"sv": "Hej ``` \u202eevil", "en": "Hello"},
    }
    branch.add(
        MAILING,
        changes=hostile,
        bodies={"sv": "Hej\n```\n````\n</details><script>x</script>\n- [x] ok\n", "en": "Hello\n"},
    )
    out = plan(branch, capsys)
    tokens = parse(out)
    inline = inline_tokens(tokens)
    # the only HTML is the plan's own collapsed section around the message as sent
    assert [t.content.strip() for t in tokens if t.type == "html_block"] == [
        "<details><summary>The message as sent: every header, the body unwrapped</summary>",
        "</details>",
    ]
    assert [t for t in inline if t.type in ("html_inline", "link_open", "image")] == []
    # the five criteria are the only checklist items, none of them ticked
    assert checklist_items(tokens) == [item for item in checklist_items(tokens) if item.startswith("[ ] ")]
    assert len(checklist_items(tokens)) == 5
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings[1].startswith(f"❌ ` mailings/{MAILING} `: ")
    assert headings[:1] + headings[2:] == [
        "Mailing plan",
        "Links",
        "Mailings around it",
        "Problems",
        "Relevance: the reviewer's judgement",
        "The message as recipients will see it",
    ]
    # the whole message stays inside its fences, backtick runs and all
    for block in [t for t in tokens if t.type == "fence"]:
        assert block.markup == "`````"
        assert "```\n````\n</details><script>x</script>\n- [x] ok\n" in block.content
    # hidden direction overrides are shown, not obeyed
    assert "[U+202E]" in out and "\u202e" not in out
    # the text still reads as written once rendered
    rendered = MarkdownIt("commonmark", {"html": True}).render(out)
    assert "Hi &lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp;amp; &lt;script&gt;" in rendered


def test_removed_mailings_and_other_files(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    branch.add(MAILING, files={"sendlog.jsonl": '{"event": "start"}\n'})
    git(branch.root, "add", "--all")
    git(branch.root, "commit", "--quiet", "-m", "A sent mailing")
    git(branch.root, "switch", "--quiet", "main")
    git(branch.root, "merge", "--quiet", "request")
    git(branch.root, "switch", "--quiet", "request")
    git(branch.root, "rm", "--quiet", "-r", f"mailings/{MAILING}")
    (branch.root / "policy.yaml").write_text(
        (branch.root / "policy.yaml").read_text(encoding="utf-8").replace("min_recipients: 500", "min_recipients: 5"),
        encoding="utf-8",
    )
    lines = plan(branch, capsys).splitlines()
    assert f"### ❌ ` mailings/{MAILING} `: removed, 5 errors, 0 warnings" in lines
    assert any(line.startswith(f"- error ` mailings/{MAILING}/sendlog.jsonl:1:1 ` \\[immutable\\]") for line in lines)
    assert lines[-5:] == [
        "### Other files changed",
        "",
        "Code, schema, policy and workflows: IT reviews these.",
        "",
        "- ` policy.yaml ` (modified)",
    ]


def test_nothing_changed(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert plan(branch, capsys).splitlines()[-1] == "No mailing changed."


def test_problems_do_not_fail_the_plan(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    branch.add(MAILING, changes={"send_at": "2027-01-20 09:00"})
    out = plan(branch, capsys)  # exit 0 asserted inside: `check` is the step that fails
    assert f"### ❌ ` mailings/{MAILING} `: 1 error, 1 warning" in out  # the warning: the id's date
    assert f"- error ` mailings/{MAILING}/mailing.yaml:1:1 ` \\[lead\\-time\\] send\\_at 2027\\-01\\-20 is" in out


def test_a_broken_request_still_gets_a_plan(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    branch.add(MAILING, yaml_text="send_at: [unclosed\n")
    out = plan(branch, capsys)
    assert "- **Dispatch:** *missing* (` send_at `)" in out
    assert "No message can be built until the request is fixed: " in out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "` plain `"),
        ("a`b", "`` a`b ``"),
        ("``x```", "```` ``x``` ````"),
        ("line\nbreak", "` line break `"),
    ],
)
def test_code_spans_outnumber_backticks(value: str, expected: str) -> None:
    assert code(value) == expected


def test_fence_is_longer_than_any_backtick_run() -> None:
    assert fenced("a\n``````\nb\n") == "```````text\na\n``````\nb\n```````"
    assert fenced("no ticks").startswith("```text\n")


def test_text_escapes_every_markup_character() -> None:
    assert text("*a* _b_ [c](d) <e> &f; #g |h| ~i~ !j") == (
        "\\*a\\* \\_b\\_ \\[c\\]\\(d\\) \\<e\\> \\&f\\; \\#g \\|h\\| \\~i\\~ \\!j"
    )
    assert text("one\r\ntwo\u2028three\x00") == "one  two three\\[U\\+0000\\]"


def test_recipient_lists_a_reviewer_can_judge(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    staff = (
        "".join(f"staff{i}@ug.kth.se\n" for i in range(5)) + "user1@kth.se\nUSER2@KTH.SE\nx@gmail.com\ny@gmail.com\n"
    )
    staff += "z@example.org\nw@cs.kth.se\nv@sys.kth.se\nu@a.kth.se\nt@b.kth.se\nnot an address\n"
    branch.add(
        MAILING,
        changes={
            "recipients": {
                "lists": [
                    {
                        "file": "recipients.txt",
                        "source": {"text": "Ladok export, all PhD students", "date": "2027-01-05"},
                    },
                    {"file": "staff.txt"},
                    {"special": "all-employees"},
                ]
            }
        },
        files={"staff.txt": staff, "secret.txt": "never@kth.se\n"},
    )
    out = plan(branch, capsys)
    lines = out.split("- **Recipients:** ")[1].split("\n- **Recipient group:**")[0].splitlines()
    assert lines[1:] == [
        "  - ` recipients.txt `: 600 addresses; source: Ladok export\\, all PhD students, taken on 2027\\-01\\-05",
        "    - Unique valid addresses by domain: ` kth.se ` 600",
        "    - Shared with ` staff.txt `: 2",
        "    - Sample: ` user0@kth.se `, ` user299@kth.se `, ` user599@kth.se `",
        "  - ` staff.txt `: 15 addresses; no source given",
        "    - Unique valid addresses by domain: ` ug.kth.se ` 5, ` kth.se ` 2, ` a.kth.se ` 1, ` b.kth.se ` 1, "
        "other internal 2, external 3 (` gmail.com ` 2, ` example.org ` 1)",
        "    - Shared with ` recipients.txt `: 2",
        "    - Sample: ` staff0@ug.kth.se `, ` USER2@KTH.SE `, ` t@b.kth.se `",
        "  - ` all-employees ` (All employees): about 5500, a list IT provides, read at send time from the file that "
        "` MAILINGS_LIST_ALL_EMPLOYEES ` names; who else is on it is known only when it is sent, so it is not sampled "
        "or compared here",
    ]
    assert "never@kth.se" not in out  # only the lists the request names


def test_long_sections_are_collapsed(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    body = "Hej\n" + "".join(f"Läs https://www.kth.se/sida/{i}\n" for i in range(9))
    branch.add(MAILING, bodies={"sv": body, "en": "Hello\n"})
    tokens = parse(plan(branch, capsys))
    html = [t.content.strip() for t in tokens if t.type == "html_block"]
    assert html[:2] == ["<details><summary>9 links and where they lead</summary>", "</details>"]


def test_the_plan_also_goes_into_a_job_summary(repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo.add()
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    code = main(["plan", "--root", str(repo.root), "--submitted", "2027-01-11", "--summary-out", str(summary)])
    printed = capsys.readouterr().out
    assert code == 0 and printed.startswith("#")
    assert summary.read_text(encoding="utf-8") == "earlier step\n" + printed  # appended, as GitHub's file wants
