"""``crusader-mail subscribers ...`` through click's runner, and a few times through a real
process; imports of other newsletter tools' exports at the end."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crusader_mail.cli import cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from crusader_mail.errors import ImportRejected, InvalidAddress, SubscriberError
from crusader_mail.models import Source, Status
from crusader_mail.storage.files.list_format import COLUMNS
from crusader_mail.storage.files.subscribers import SubscriberList

JANE = "jane.doe@example.com"


@pytest.fixture
def app(clean_env: Path, clock: FixedClock) -> AppContext:
    config = clean_env / "crusader-mail.toml"
    config.write_text('subscribers_dir = "people"\noutbox_dir = "out"\n', encoding="utf-8")
    return AppContext(config=config, clock=clock)


@pytest.fixture
def readers(app: AppContext, clock: FixedClock) -> SubscriberList:
    assert app.config is not None
    return SubscriberList(app.config.parent / "people", clock)


def run(app: AppContext, *args: str) -> Result:
    return CliRunner().invoke(cli, ["subscribers", *args], obj=app)


def ok(app: AppContext, *args: str) -> str:
    result = run(app, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_add_masks_the_address_and_saves_the_reader(
    app: AppContext, readers: SubscriberList
) -> None:
    out = ok(app, "add", JANE, "--name", "Jane Doe")
    assert out == "added j•••@example.com (active)\n"
    (jane,) = readers.iter()
    assert (jane.email, jane.name, jane.status, jane.subscribed_via) == (
        JANE,
        "Jane Doe",
        Status.ACTIVE,
        Source.CLI,
    )
    out = ok(app, "add", "jane.doe@EXAMPLE.com", "--status", "pending")
    assert out == "j•••@example.com is already on the list (active): unchanged\n"
    assert JANE not in out


def test_add_does_not_bring_back_a_reader_who_left(app: AppContext) -> None:
    ok(app, "add", JANE, "--status", "unsubscribed")
    out = ok(app, "add", JANE)
    assert "already on the list (unsubscribed): unchanged" in out
    assert "subscribing again themselves" in out


def test_add_rejects_a_bad_address(app: AppContext, readers: SubscriberList) -> None:
    result = run(app, "add", "jane.doe@example")
    assert isinstance(result.exception, InvalidAddress)
    assert "jane.doe@example" not in str(result.exception)
    assert not readers.path.exists()


def test_remove_unsubscribes(app: AppContext, readers: SubscriberList) -> None:
    ok(app, "add", JANE)
    out = ok(app, "remove", JANE)
    assert out == "unsubscribed j•••@example.com (was active)\n"
    assert readers.counts()[Status.UNSUBSCRIBED] == 1
    assert ok(app, "remove", JANE) == "j•••@example.com was already unsubscribed\n"
    result = run(app, "remove", "who@example.com")
    assert isinstance(result.exception, SubscriberError)
    assert str(result.exception) == "w•••@example.com is not on the list"


def test_remove_forget_erases_and_names_other_places(
    app: AppContext, readers: SubscriberList
) -> None:
    ok(app, "add", JANE, "--name", "Jane Doe")
    ok(app, "add", "other@example.com")
    out = ok(app, "remove", JANE, "--forget")
    assert out.startswith("erased j•••@example.com\nother places to check:\n")
    assert "hashed addresses only" in out
    assert JANE not in out
    assert "jane" not in readers.path.read_text().lower()
    assert "jane" not in readers.log.path.read_text().lower()  # the consent history too
    assert "other@example.com" in readers.log.path.read_text()
    assert "consent-log.csv" in out  # git history keeps earlier versions
    assert "not on the list: nothing to erase" in ok(app, "remove", JANE, "--forget")


def test_list_shows_full_addresses(app: AppContext) -> None:
    ok(app, "add", JANE, "--name", "Jane Doe")
    ok(app, "add", "bob@example.org", "--status", "pending")
    table = ok(app, "list")
    assert JANE in table
    assert "bob@example.org" in table
    assert "2 readers" in table
    pending = ok(app, "list", "--status", "pending")
    assert "bob@example.org" in pending
    assert JANE not in pending
    data = json.loads(ok(app, "list", "--json"))
    assert data["count"] == 2
    assert data["subscribers"][1] == {
        "email": JANE,
        "name": "Jane Doe",
        "status": "active",
        "subscribed_at": "2026-11-23T09:00:00Z",
        "subscribed_via": "cli",
        "confirmed_at": "2026-11-23T09:00:00Z",
        "confirmed_via": "cli",
        "left_at": None,
        "left_via": None,
        "ref": "cli add",
        "updated_at": "2026-11-23T09:00:00Z",
    }


def test_export_prints_every_column(app: AppContext) -> None:
    ok(app, "add", JANE, "--name", 'Jane "JD", Doe')
    ok(app, "add", "bob@example.org", "--status", "bounced")
    rows = list(csv.DictReader(io.StringIO(ok(app, "export"))))
    assert [tuple(r) for r in rows] == [COLUMNS, COLUMNS]
    assert [(r["email"], r["name"], r["status"]) for r in rows] == [
        ("bob@example.org", "", "bounced"),
        (JANE, 'Jane "JD", Doe', "active"),
    ]
    assert rows[0]["left_at"] == "2026-11-23T09:00:00Z"


def test_export_to_a_file_then_restore_elsewhere_gives_the_same_rows(
    app: AppContext, clock: FixedClock
) -> None:
    ok(app, "add", JANE, "--name", 'Jane "JD", Doe')
    ok(app, "add", "Bob@example.org", "--status", "pending")
    ok(app, "add", "cy@example.org")
    ok(app, "remove", "CY@example.org")
    assert app.config is not None
    out = app.config.parent / "backup" / "readers.csv"
    assert ok(app, "export", "--out", str(out)) == f"exported 3 readers to {out}\n"
    exported = out.read_text(encoding="utf-8")
    assert exported == ok(app, "export")  # the same bytes as on stdout
    assert exported.splitlines()[0] == ",".join(COLUMNS)
    assert sorted(p.name for p in out.parent.iterdir()) == ["readers.csv"]  # no temporary left
    other = app.config.parent / "other.toml"
    other.write_text('subscribers_dir = "moved"\noutbox_dir = "out"\n', encoding="utf-8")
    moved = AppContext(config=other, clock=clock)
    done = ok(moved, "import", "--restore", str(out))
    assert done.startswith("restored 3 readers from readers.csv")
    assert ok(moved, "export") == exported
    assert ok(AppContext(config=other, clock=clock), "import", "--restore", str(out)).startswith(
        "restored 3 readers"  # again: each reader replaced by itself
    )
    assert ok(moved, "export") == exported


def test_the_consent_history_exports_and_restores_into_another_store(
    app: AppContext, clock: FixedClock
) -> None:
    ok(app, "add", JANE)
    clock.advance(timedelta(days=1))
    ok(app, "remove", JANE)
    ok(app, "add", "Bob@example.org", "--status", "pending")
    history = ok(app, "export", "--history")
    rows = list(csv.DictReader(io.StringIO(history)))
    assert [(r["email"], r["action"], r["status"], r["via"], r["ref"]) for r in rows] == [
        (JANE, "add", "active", "cli", "cli add"),
        (JANE, "unsubscribe", "unsubscribed", "cli", "cli remove"),
        ("Bob@example.org", "add", "pending", "cli", "cli add"),
    ]
    assert rows[1]["at"] == "2026-11-24T09:00:00Z"
    assert app.config is not None
    readers_file = app.config.parent / "readers.csv"
    history_file = app.config.parent / "history.csv"
    ok(app, "export", "--out", str(readers_file))
    assert ok(app, "export", "--history", "--out", str(history_file)) == (
        f"exported 3 events to {history_file}\n"
    )
    other = app.config.parent / "other.toml"
    other.write_text('subscribers_dir = "moved"\noutbox_dir = "out"\n', encoding="utf-8")
    clock.advance(timedelta(days=1))
    ok(AppContext(config=other, clock=clock), "import", "--restore", str(readers_file))
    done = ok(AppContext(config=other, clock=clock), "import", "--restore", str(history_file))
    assert done == "restored 3 events of the consent history from history.csv\n"
    moved = list(
        csv.DictReader(
            io.StringIO(ok(AppContext(config=other, clock=clock), "export", "--history"))
        )
    )
    assert [(r["email"], r["action"]) for r in moved] == [
        ("Bob@example.org", "restore"),
        (JANE, "restore"),
        *[(r["email"], r["action"]) for r in rows],
    ]
    damaged = app.config.parent / "damaged.csv"
    damaged.write_text(history.replace(",unsubscribe,", ",vanish,"), encoding="utf-8")
    result = run(AppContext(config=other, clock=clock), "import", "--restore", str(damaged))
    assert result.exit_code != 0
    assert "line 3: action 'vanish' is not one of" in str(result.exception)


def test_a_restore_with_bad_rows_restores_nothing_and_names_each(
    app: AppContext, readers: SubscriberList
) -> None:
    good = "ann@example.com,Ann,active,2026-01-01T00:00:00Z,cli,,,,,,2026-01-01T00:00:00Z"
    source = write_import(
        app,
        "\n".join(
            [
                ",".join(COLUMNS),
                good,
                good.replace("active", "gone"),
                good.replace("ann@", "ANN@"),
                good.replace("ann@example.com", "bob@Example.com"),
                good.replace("2026-01-01T00:00:00Z", "yesterday", 1),
            ]
        )
        + "\n",
    )
    result = run(app, "import", "--restore", str(source))
    assert isinstance(result.exception, ImportRejected)
    message = str(result.exception)
    assert message.startswith(f"{source}: 4 bad rows, nothing restored: line 3: status 'gone'")
    assert "line 4: A•••@example.com is the reader of line 2" in message
    assert "line 5: b•••@Example.com is not a valid address in normal form" in message
    assert "line 6: subscribed_at 'yesterday' is not an ISO 8601 time" in message
    assert "ann@" not in message
    assert not readers.path.exists()
    bad_header = write_import(app, "email,name\nann@example.com,Ann\n")
    result = run(app, "import", "--restore", str(bad_header))
    assert isinstance(result.exception, ImportRejected)
    assert "line 1: not an export of crusader-mail subscribers" in str(result.exception)
    result = run(app, "import", "--restore", "--status", "pending", str(bad_header))
    assert result.exit_code == 2
    assert "--restore stores the file as it is" in result.output


def test_stats_counts_by_status(app: AppContext) -> None:
    for email, status in [("a@example.com", "active"), ("b@example.com", "active")]:
        ok(app, "add", email, "--status", status)
    ok(app, "add", "c@example.com", "--status", "complained")
    data = json.loads(ok(app, "stats", "--json"))
    assert data == {
        "counts": {"pending": 0, "active": 2, "unsubscribed": 0, "bounced": 0, "complained": 1},
        "total": 3,
    }
    table = ok(app, "stats")
    assert "complained" in table
    assert "total" in table


def write_import(app: AppContext, text: str) -> Path:
    assert app.config is not None
    path = app.config.parent / "new-readers.csv"
    path.write_text(text, encoding="utf-8")
    return path


BAD_IMPORT = (
    "Email,Name,Company\n"
    "ann@example.com,Ann,A Ltd\n"
    "bob.smith@example,Bob,B Ltd\n"
    "cat@example.com,Cat,C Ltd\n"
    ",Nobody,N Ltd\n"
    "ANN@example.com,Ann again,A Ltd\n"
    "ann@EXAMPLE.COM,,A Ltd\n"
)


def test_import_with_bad_rows_imports_nothing(app: AppContext, readers: SubscriberList) -> None:
    source = write_import(app, BAD_IMPORT)
    result = run(app, "import", str(source))
    assert isinstance(result.exception, ImportRejected)
    message = str(result.exception)
    assert "\n" not in message
    assert message.startswith(f"{source}: 2 bad rows, nothing imported")
    assert "line 3: b•••@example: " in message
    assert "line 5: no address in the email column" in message
    assert "bob.smith" not in message
    assert not readers.path.exists()


def test_import_skip_invalid_takes_the_good_rows(app: AppContext, readers: SubscriberList) -> None:
    source = write_import(app, BAD_IMPORT)
    out = ok(app, "import", str(source), "--skip-invalid")
    assert "skipped line 3: b•••@example: " in out
    assert "added 2 readers (active)" in out
    assert "merged 1 repeated row(s)" in out
    assert "merged 1 row that differs only in case" in out
    for secret in ("ann@", "ANN@", "cat@", "bob.smith"):
        assert secret not in out
    found = {s.email: (s.name, s.status, s.subscribed_via, s.ref) for s in readers.iter()}
    assert found == {
        "ann@example.com": ("Ann", Status.ACTIVE, Source.IMPORT, "new-readers.csv"),
        "cat@example.com": ("Cat", Status.ACTIVE, Source.IMPORT, "new-readers.csv"),
    }


def test_import_never_reactivates_and_can_make_readers_pending(
    app: AppContext, readers: SubscriberList
) -> None:
    ok(app, "add", "gone@example.com", "--status", "unsubscribed")
    source = write_import(app, "email\ngone@example.com\nnew@example.com\n")
    out = ok(app, "import", str(source), "--status", "pending")
    assert "added 1 reader (pending)" in out
    assert "already on the list, status unchanged: 1 unsubscribed" in out
    assert "1 of them had left" in out
    statuses = {s.email: s.status for s in readers.iter()}
    assert statuses == {"gone@example.com": Status.UNSUBSCRIBED, "new@example.com": Status.PENDING}


def test_import_of_a_missing_file_is_one_line(app: AppContext) -> None:
    result = run(app, "import", "nowhere.csv")
    assert isinstance(result.exception, ImportRejected)
    assert str(result.exception) == "nowhere.csv: no such file"


def test_tidy_sorts_a_hand_edited_list(app: AppContext, readers: SubscriberList) -> None:
    ok(app, "add", "b@example.com")
    with readers.path.open("a") as out:
        out.write("a@example.com,,active,,,,,,,,\n")
    assert "out of order" in str(run(app, "stats").exception)
    assert ok(app, "tidy") == "put the list in order\n"
    assert json.loads(ok(app, "stats", "--json"))["total"] == 2
    assert ok(app, "tidy") == "the list is already in order\n"


def test_a_real_process(app: AppContext) -> None:
    assert app.config is not None
    exe = Path(sys.executable).with_name("crusader-mail")
    base = [str(exe), "--config", str(app.config), "subscribers"]

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=60, check=False
        )

    added = call("add", JANE, "--name", "Jane")
    assert (added.returncode, added.stdout, added.stderr) == (
        0,
        "added j•••@example.com (active)\n",
        "",
    )
    stats = call("stats", "--json")
    assert json.loads(stats.stdout)["counts"]["active"] == 1
    bad = write_import(app, "email\nnot-an-address\n")
    rejected = call("import", str(bad))
    assert rejected.returncode == 1
    assert rejected.stdout == ""
    assert rejected.stderr.startswith("crusader-mail: error: ")
    assert rejected.stderr.count("\n") == 1
    assert "line 2: •••: " in rejected.stderr
    assert "not-an-address" not in rejected.stderr
    assert "Traceback" not in rejected.stderr
    exported = call("export")
    assert exported.stdout.splitlines()[1].startswith(f"{JANE},Jane,active,")


def test_forget_erases_what_a_killed_erase_of_the_consent_log_left(
    app: AppContext, readers: SubscriberList
) -> None:
    ok(app, "add", JANE)
    ok(app, "add", "other@example.com")
    left = readers.log.path.with_name(f".{readers.log.path.name}.ab_3x9zq.tmp")
    left.write_bytes(readers.log.path.read_bytes())  # a whole copy, as a killed erase leaves
    out = ok(app, "remove", JANE, "--forget")
    assert "of subscribers.csv or consent-log.csv left by a killed write" in out
    assert left.name in out
    assert not left.exists()
    everything = [p for p in readers.path.parent.rglob("*") if p.is_file()]
    assert not [p for p in everything if JANE.encode() in p.read_bytes()]


# --- the exports of other newsletter tools ----------------------------------------------------
# Mailchimp, Substack, Buttondown, listmonk and Ghost, with their own column names (as their
# export code writes them): the command says which columns it used, and a reader the export
# marks as left never becomes an active reader here.

MAILCHIMP_SUBSCRIBED = (
    "Email Address,First Name,Last Name,Company,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,"
    "CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,"
    "LAST_CHANGED,LEID,EUID,NOTES,TAGS\n"
    "ann.archer@example.com,Ann,Archer,,2,2020-01-01 10:00:00,,2020-01-01 10:00:00,,,,,,,,,"
    "2020-01-01 10:00:00,1,a1,,\n"
    "bob.baker@example.com, Bob ,,,2,2020-01-01 10:00:00,,2020-01-01 10:00:00,,,,,,,,,"
    '2020-01-01 10:00:00,2,b2,,"""Editors"""\n'
)
MAILCHIMP_UNSUBSCRIBED = (
    "Email Address,First Name,Last Name,Company,Position,ZIP Code,MEMBER_RATING,OPTIN_TIME,"
    "OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,"
    "UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER,LEID,"
    "EUID,NOTES,TAGS\n"
    "bob.baker@example.com,Bob,,,,,,2018-02-12 10:54:27,,2018-02-12 10:54:27,,,,,,,,,"
    "2018-07-23 12:19:27,,,,,,,,\n"
    "una.gone@example.com,Una,Gone,,,,,2018-02-12 10:54:26,,2018-02-12 10:54:26,,,,,,,,,"
    "2023-06-06 12:56:15,,,,,,,,\n"
)
MAILCHIMP_CLEANED = (
    "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,CONFIRM_TIME,CLEAN_TIME,"
    "CLEAN_CAMPAIGN_TITLE,CLEAN_CAMPAIGN_ID,LEID,EUID,NOTES,TAGS\n"
    "dead.box@example.com,Dee,,1,2018-02-05 19:28:23,2018-02-05 19:28:23,2020-03-23 17:30:05,"
    ",,,,,Editors\n"
)

RECORDED_ONE = (
    "recorded 1 reader who left (1 unsubscribed), without their names: never sent an issue, "
    "never brought back by an import"
)


def imported(app: AppContext, name: str, text: str, *args: str) -> list[str]:
    assert app.config is not None
    source = app.config.parent / name
    source.write_text(text, encoding="utf-8")
    result = run(app, "import", str(source), *args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr == ""
    return result.stdout.splitlines()


def statuses(readers: SubscriberList) -> dict[str, tuple[str, str]]:
    return {s.email: (s.status.value, s.name) for s in readers.iter()}


def test_a_mailchimp_export_is_read_and_the_columns_named(
    app: AppContext, readers: SubscriberList
) -> None:
    lines = imported(app, "subscribed_members_export.csv", MAILCHIMP_SUBSCRIBED)
    assert lines == [
        "using column 'Email Address' for the address and 'First Name' + 'Last Name' for the name",
        "added 2 readers (active)",
    ]
    assert statuses(readers) == {
        "ann.archer@example.com": ("active", "Ann Archer"),
        "bob.baker@example.com": ("active", "Bob"),
    }


def test_mailchimp_unsubscribed_and_cleaned_never_become_active(
    app: AppContext, readers: SubscriberList
) -> None:
    imported(app, "subscribed.csv", MAILCHIMP_SUBSCRIBED)
    lines = imported(app, "unsubscribed.csv", MAILCHIMP_UNSUBSCRIBED)
    assert lines == [
        "using column 'Email Address' for the address and 'First Name' + 'Last Name' for the "
        "name; 'UNSUB_TIME' for who left",
        "added 0 readers (active)",
        RECORDED_ONE,
        "1 reader on the list is marked as left in the file: now 1 unsubscribed",
    ]
    lines = imported(app, "cleaned.csv", MAILCHIMP_CLEANED)
    assert lines[0].endswith("; 'CLEAN_TIME' for who left")
    assert statuses(readers) == {
        "ann.archer@example.com": ("active", "Ann Archer"),
        "bob.baker@example.com": ("unsubscribed", "Bob"),
        "dead.box@example.com": ("bounced", ""),
        "una.gone@example.com": ("unsubscribed", ""),
    }
    gone = readers.get("una.gone@example.com")
    assert gone is not None
    assert (gone.subscribed_at, gone.left_via, gone.ref) == (
        None,
        Source.IMPORT,
        "unsubscribed.csv",
    )
    # the subscribed file again (an old copy): who left stays left
    lines = imported(app, "subscribed.csv", MAILCHIMP_SUBSCRIBED)
    assert (
        "1 of them had left (unsubscribed, bounced or complained) and were not re-activated"
        in lines
    )
    assert statuses(readers)["bob.baker@example.com"][0] == "unsubscribed"
    # and the left file again: nothing changes
    lines = imported(app, "unsubscribed.csv", MAILCHIMP_UNSUBSCRIBED)
    assert lines[-1] == "2 marked as left had already left here: unchanged"


# Each tool's export header as its export code writes it, one reader who reads, one who left,
# and (where the tool has them) rows that are neither.
EXPORTS = {
    "substack": (
        "email,active_subscription,expiry,email_disabled,created_at\n"
        "ann.archer@example.com,true,2027-07-06T16:20:44.000Z,false,2018-08-27T15:06:27.713Z\n"
        "una.gone@example.com,,,true,2018-12-19T08:03:04.977Z\n"
        "x1y2@deletion-request.substack.com,,,false,2019-01-01T00:00:00.000Z\n",
        "using column 'email' for the address (no name column); 'email_disabled' for who left",
        {"ann.archer@example.com": ("active", ""), "una.gone@example.com": ("unsubscribed", "")},
        "skipped 1 row, neither subscribed nor left: a Substack deletion request (1)",
    ),
    "buttondown": (
        "email,subscriber_type,creation_date,notes,metadata,tags,referrer_url\n"
        "ann.archer@example.com,regular,2025-03-03,,{},[],\n"
        "una.gone@example.com,unsubscribed,2024-02-02,,{},[],\n"
        "pat.pending@example.com,unactivated,2024-02-02,,{},[],\n"
        "spam.bot@example.com,spammy,2024-02-02,,{},[],\n",
        "using column 'email' for the address (no name column); 'subscriber_type' for who left",
        {"ann.archer@example.com": ("active", ""), "una.gone@example.com": ("unsubscribed", "")},
        "skipped 2 rows, neither subscribed nor left: subscriber_type 'spammy' (1), "
        "subscriber_type 'unactivated' (1)",
    ),
    "listmonk": (
        "uuid,email,name,attributes,status,created_at,updated_at\n"
        'a1,ann.archer@example.com,Ann Archer,"{""city"": ""Bengaluru""}",enabled,'
        "2024-01-01 00:00:00 +0000 UTC,2024-01-01 00:00:00 +0000 UTC\n"
        "b2,una.gone@example.com,Una Gone,{},blocklisted,2024-01-01,2024-01-02\n"
        "c3,dee.disabled@example.com,Dee,{},disabled,2024-01-01,2024-01-02\n",
        "using column 'email' for the address and 'name' for the name; 'status' for who left",
        {
            "ann.archer@example.com": ("active", "Ann Archer"),
            "una.gone@example.com": ("unsubscribed", ""),
        },
        "skipped 1 row, neither subscribed nor left: status 'disabled' (1)",
    ),
    "ghost": (
        "id,email,name,note,subscribed_to_emails,complimentary_plan,stripe_customer_id,"
        "created_at,deleted_at,labels,tiers\n"
        "1,ann.archer@example.com,Ann Archer,,true,false,,2026-01-01T00:00:00.000Z,,vip,\n"
        "2,una.gone@example.com,Una Gone,,false,false,,2026-01-01T00:00:00.000Z,,,\n",
        "using column 'email' for the address and 'name' for the name; "
        "'subscribed_to_emails' for who left",
        {
            "ann.archer@example.com": ("active", "Ann Archer"),
            "una.gone@example.com": ("unsubscribed", ""),
        },
        None,
    ),
}


@pytest.mark.parametrize("tool", sorted(EXPORTS))
def test_each_tools_export(tool: str, app: AppContext, readers: SubscriberList) -> None:
    text, columns, expected, skipped = EXPORTS[tool]
    lines = imported(app, f"{tool}.csv", text)
    assert lines[0] == columns
    assert "added 1 reader (active)" in lines
    assert RECORDED_ONE in lines
    assert (skipped in lines) if skipped else not any(x.startswith("skipped") for x in lines)
    assert statuses(readers) == expected
    assert [s.email for s in readers.iter(Status.ACTIVE)] == ["ann.archer@example.com"]


def test_leaving_wins_within_one_file(app: AppContext, readers: SubscriberList) -> None:
    """Mailchimp's three files pasted into one, or a reader in two rows: left is left."""
    text = (
        "email,status\n"
        "ann.archer@example.com,subscribed\n"
        "Ann.Archer@example.com,cleaned\n"
        "ann.archer@example.com,unsubscribed\n"
        "bob.baker@example.com,complained\n"
        "bob.baker@example.com,active\n"
        "cat.new@example.com,\n"
    )
    lines = imported(app, "mixed.csv", text)
    assert statuses(readers) == {
        "ann.archer@example.com": ("bounced", ""),
        "bob.baker@example.com": ("complained", ""),
    }
    assert "skipped 1 row, neither subscribed nor left: status '' (1)" in lines


def test_no_address_column_names_what_it_found(app: AppContext) -> None:
    assert app.config is not None
    source = app.config.parent / "people.csv"
    source.write_text("Mail,Full Name\nann@example.com,Ann\n")
    result = run(app, "import", str(source))
    assert isinstance(result.exception, ImportRejected)
    assert str(result.exception) == (
        f"{source}, line 1: no 'email' column (nor 'Email Address', 'E-mail'; found 'Mail', "
        "'Full Name')"
    )


def test_import_json_in_a_real_process(app: AppContext, readers: SubscriberList) -> None:
    assert app.config is not None
    run(app, "add", "bob.baker@example.com")
    source = app.config.parent / "unsubscribed.csv"
    source.write_text(MAILCHIMP_UNSUBSCRIBED)
    exe = Path(sys.executable).with_name("crusader-mail")
    done = subprocess.run(
        [str(exe), "--config", str(app.config), "subscribers", "import", str(source), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    data = json.loads(done.stdout)
    assert data["columns"] == {
        "email": "Email Address",
        "name": ["First Name", "Last Name"],
        "status": ["UNSUB_TIME"],
    }
    assert (data["added"], data["left"]) == (
        0,
        {"recorded": {"unsubscribed": 1}, "now_left": {"unsubscribed": 1}, "already_left": 0},
    )
    assert "bob.baker@" not in done.stdout
    assert "una.gone@" not in done.stdout
    assert statuses(readers) == {
        "bob.baker@example.com": ("unsubscribed", ""),
        "una.gone@example.com": ("unsubscribed", ""),
    }
