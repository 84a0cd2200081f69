"""`pacs conformance`: the DICOM Conformance Statement, in the structure of PS3.2 Annex A,
generated from the running configuration and the tables the AE is built from.

Room: cli/. Besides cli/serve, the one module that may import the DIMSE face: it reads
dimse/contexts (the accepted presentation contexts) and dimse/find (the extended negotiation
it answers), plain data only; it starts nothing. Also imports config, cli/sop_conformance
(statuses, keys, storage and retrieve policy), cli/site_conformance (configuration, character
sets, security) and cli/markdown. Markdown by default, HTML with `--html`.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable
from typing import Any

from pydicom.uid import UID

from pacs import __version__
from pacs.cli.markdown import md_table, to_html
from pacs.cli.modality_conformance import (
    commitment_section,
    mpps_section,
    worklist_section,
)
from pacs.cli.site_conformance import (
    annexes,
    character_sets,
    network_and_configuration,
    security,
)
from pacs.cli.sop_conformance import (
    find_section,
    get_section,
    move_initiation_section,
    move_section,
    storage_section,
    verification_section,
)
from pacs.config import Settings
from pacs.dimse.contexts import (
    APPLICATION_CONTEXT_NAME,
    FIND_SERVICE,
    GET_SERVICE,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    MOVE_SERVICE,
    STORAGE_SERVICE,
    SUPPORTED_CONTEXTS,
    VERIFICATION_SERVICE,
    SupportedContext,
)
from pacs.dimse.find import EXTENDED_NEGOTIATION_ACCEPTED, EXTENDED_NEGOTIATION_DECLINED

ACCEPTED_CONTEXTS_HEADING = "4.2.1.4.1 Presentation Contexts Accepted"
TRANSFER_SYNTAX_HEADER = ("Transfer Syntax", "UID")
ABSTRACT_SYNTAX_HEADER = ("Abstract Syntax", "UID", "Role", "Extended Negotiation")


def add_conformance_command(
    commands: Any, settings_arguments: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register `pacs conformance` with the server flags that change the statement."""
    parser = commands.add_parser(
        "conformance", help="print the DICOM Conformance Statement (PS3.2 Annex A)",
        description="Generated from the configuration (file, PACS_* variables, the flags "
                    "below) and from the tables the server is built from.")
    settings_arguments(parser)
    parser.add_argument("--ae-title", help="our AE title (default MINIPACS)")
    parser.add_argument("--host", help="address the server listens on")
    parser.add_argument("--port", help="port the server listens on")
    parser.add_argument("--remote", action="append", dest="remotes", metavar="AE@HOST:PORT",
                        help="a C-MOVE destination (repeatable)")
    parser.add_argument("--duplicates", help="keep, replace or reject")
    parser.add_argument("--max-pdu", help="largest PDU we accept, bytes")
    parser.add_argument("--max-associations", help="associations at once")
    parser.add_argument("--allow-calling-ae", action="append", dest="peers", metavar="AE",
                        help="an allow-listed calling AE (repeatable)")
    parser.add_argument("--tls-port", help="the DICOM TLS port")
    parser.add_argument("--html", action="store_true", help="HTML instead of Markdown")
    parser.set_defaults(handler=None)


def run_conformance(settings: Settings, html: bool = False) -> int:
    """Print the statement for these settings."""
    markdown = statement(settings)
    print(to_html(markdown, f"{settings.ae_title} DICOM Conformance Statement") if html
          else markdown, end="")
    return 0


def _name(uid: str) -> str:
    return UID(uid).name if UID(uid).is_valid else uid


def _roles(context: SupportedContext) -> str:
    return " and ".join(context.roles)


def overview(settings: Settings) -> list[str]:
    """Section 1: the network services, by SCU and SCP."""
    rows: list[tuple[str, str, str]] = []
    for group, services in (("Transfer", (STORAGE_SERVICE,)),
                            ("Query/Retrieve", (FIND_SERVICE, MOVE_SERVICE, GET_SERVICE)),
                            ("Workflow Management", ()),
                            ("Verification", (VERIFICATION_SERVICE,))):
        rows.append((f"**{group}**", "", ""))
        contexts = [c for c in SUPPORTED_CONTEXTS if c.service in services]
        if group == "Transfer":
            rows.append((f"{len(contexts)} Storage SOP Classes (4.2.1.1)",
                         "Yes (C-MOVE and C-GET sub-operations)", "Yes"))
            continue
        if not contexts:
            rows.append(("none", "", ""))
        rows += [(_name(c.sop_class_uid), "No", "Yes") for c in contexts]
    return [
        "## 1 Overview", "",
        f"minipacs {__version__} is a DICOM archive with one Application Entity, "
        f"`{settings.ae_title}`: modalities store images to it, workstations query and "
        "retrieve them. It opens associations only to send the instances of a C-MOVE.", "",
        *md_table(("SOP Classes", "User of Service (SCU)", "Provider of Service (SCP)"), rows),
        "No media interchange (section 5).", "",
    ]


def introduction(settings: Settings) -> list[str]:
    """Section 3: revision, audience, remarks, abbreviations, references."""
    return [
        "## 2 Table of Contents", "",
        "1 Overview; 3 Introduction; 4 Networking; 5 Media Interchange; 6 Support of "
        "Character Sets; 7 Security; 8 Annexes.", "",
        "## 3 Introduction", "",
        "### 3.1 Revision History", "",
        *md_table(("Version", "Date", "Description"),
                  [(__version__, datetime.date.today().isoformat(),
                    "generated by `pacs conformance` for this configuration")]),
        "### 3.2 Audience", "",
        "Integrators of modalities, workstations and other archives with minipacs.", "",
        "### 3.3 Remarks", "",
        "Every list in this statement is read from the code and the configuration that "
        "produced it: the presentation contexts from the table the AE is built from, the "
        "C-FIND keys and matching types from the information model tables, the statuses "
        "from the status table. A test proposes every listed context to the AE.", "",
        "### 3.4 Abbreviations", "",
        *md_table(("Abbreviation", "Meaning"), [
            ("AE", "Application Entity"), ("PDU", "Protocol Data Unit"),
            ("SCU / SCP", "Service Class User / Provider"), ("SOP", "Service-Object Pair"),
            ("TLS", "Transport Layer Security"), ("UID", "Unique Identifier")]),
        "### 3.5 References", "",
        "NEMA PS3, Digital Imaging and Communications in Medicine (DICOM): PS3.2 "
        "(Conformance), PS3.4 (Service Class Specifications), PS3.7 (Message Exchange), "
        "PS3.8 (Network Communication Support), PS3.15 (Security Profiles).", "",
    ]


def implementation_model(settings: Settings) -> list[str]:
    """Section 4.1: data flow, functional definition, sequencing."""
    return [
        "## 4 Networking", "",
        "### 4.1 Implementation Model", "",
        "#### 4.1.1 Application Data Flow", "",
        f"- A remote AE sends instances (C-STORE) to `{settings.ae_title}`: they are written "
        "to the archive and indexed.",
        "- A remote AE queries (C-FIND) the index.",
        "- A remote AE retrieves (C-MOVE to a known destination, or C-GET) instances: "
        f"`{settings.ae_title}` sends them as C-STORE sub-operations.",
        "- A remote AE verifies communication (C-ECHO).", "",
        "#### 4.1.2 Functional Definition of AEs", "",
        f"`{settings.ae_title}` listens for associations on the port(s) of 4.3. Each "
        "association runs in its own thread; the archive folder and the index are shared by "
        "every association (and by every worker process, `pacs serve --workers`).", "",
        "#### 4.1.3 Sequencing of Real-World Activities", "",
        "An instance can be queried and retrieved as soon as its C-STORE has been answered "
        "with Success.", "",
    ]


def association_policies(settings: Settings) -> list[str]:
    """Section 4.2.1.2: general, number of associations, asynchrony, identification."""
    max_pdu = "unlimited" if settings.max_pdu == 0 else f"{settings.max_pdu} bytes"
    return [
        "##### 4.2.1.2 Association Policies", "",
        *md_table(("Policy", "Value"), [
            ("Application Context Name", f"`{APPLICATION_CONTEXT_NAME}`"),
            ("Maximum PDU size received (`server.max_pdu`)", max_pdu),
            ("Maximum PDU size sent", "as the peer announces"),
            ("Associations at once, per process (`server.max_associations`)",
             f"{settings.max_associations}; one more is rejected (local limit exceeded)"),
            ("Associations initiated at once", "one per C-MOVE, opened one after the other"),
            ("Asynchronous operations", "not supported: the window item is not answered "
                                        "(1 operation invoked and performed)"),
            ("Implementation Class UID", f"`{IMPLEMENTATION_CLASS_UID}`"),
            ("Implementation Version Name", f"`{IMPLEMENTATION_VERSION_NAME}`"),
            ("Timeouts (ACSE / DIMSE / network)", f"{settings.acse_timeout:g} s / "
             f"{settings.dimse_timeout:g} s / {settings.network_timeout:g} s"),
        ]),
    ]


def _context_groups() -> list[tuple[tuple[str, ...], list[SupportedContext]]]:
    """Contexts grouped by identical transfer syntax lists, in table order."""
    groups: dict[tuple[str, ...], list[SupportedContext]] = {}
    for context in SUPPORTED_CONTEXTS:
        groups.setdefault(context.transfer_syntaxes, []).append(context)
    return list(groups.items())


def _extended(context: SupportedContext) -> str:
    parts = []
    if context.role_selection:
        parts.append("SCP/SCU Role Selection accepted")
    if context.service == FIND_SERVICE:
        parts.append("C-FIND extended negotiation (4.2.1.4.4)")
    return "; ".join(parts) or "None"


def accepted_contexts() -> list[str]:
    """Section 4.2.1.4.1: every accepted context, grouped by its transfer syntax list."""
    lines = [f"###### {ACCEPTED_CONTEXTS_HEADING}", "",
             "Every abstract syntax below is accepted with the transfer syntaxes of its group; "
             "when several are proposed, the first in the group's order is chosen.", ""]
    for number, (syntaxes, contexts) in enumerate(_context_groups(), 1):
        services = ", ".join(dict.fromkeys(c.service for c in contexts))
        lines += [f"**Group {number}**: {services}, {len(contexts)} abstract syntaxes, "
                  f"{len(syntaxes)} transfer syntaxes (in order of preference).", ""]
        lines += md_table(TRANSFER_SYNTAX_HEADER,
                          [(_name(uid), f"`{uid}`") for uid in syntaxes])
        lines += md_table(ABSTRACT_SYNTAX_HEADER,
                          [(_name(c.sop_class_uid), f"`{c.sop_class_uid}`", _roles(c),
                            _extended(c)) for c in contexts])
    return lines


def acceptance_policy(settings: Settings) -> list[str]:
    """Section 4.2.1.4: who may associate, the accepted contexts and SOP conformance."""
    called = "rejected (called AE title not recognized)" if settings.require_called_ae \
        else "accepted"
    if not settings.peers:
        calling = "any calling AE title is accepted and may use every service (no allow-list)"
    elif settings.unknown_callers == "reject":
        calling = "a calling AE title not in the allow-list (7.2) is rejected"
    else:
        calling = "any calling AE title is accepted; the allow-list (7.2) says what it may do"
    return [
        "##### 4.2.1.4 Association Acceptance Policy", "",
        f"- An association whose Called AE Title is not `{settings.ae_title}` is {called} "
        "(`server.require_called_ae`).",
        f"- Calling AE: {calling}.",
        "- A presentation context whose abstract syntax is not listed below is rejected "
        "(abstract syntax not supported); one without a listed transfer syntax is rejected "
        "(transfer syntaxes not supported).",
        "- User Identity Negotiation is not answered; the association is not refused for it.",
        "",
        *accepted_contexts(),
        "###### 4.2.1.4.2 SOP Specific Conformance for Verification", "",
        *verification_section(settings),
        "###### 4.2.1.4.3 SOP Specific Conformance for Storage SOP Classes", "",
        *storage_section(settings),
        "###### 4.2.1.4.4 SOP Specific Conformance for Query/Retrieve - FIND", "",
        *find_section(settings, EXTENDED_NEGOTIATION_ACCEPTED, EXTENDED_NEGOTIATION_DECLINED),
        "###### 4.2.1.4.5 SOP Specific Conformance for Query/Retrieve - MOVE", "",
        *move_section(settings),
        "###### 4.2.1.4.6 SOP Specific Conformance for Query/Retrieve - GET", "",
        *get_section(settings),
        "###### 4.2.1.4.7 SOP Specific Conformance for Modality Worklist - FIND", "",
        *worklist_section(settings),
        "###### 4.2.1.4.8 SOP Specific Conformance for Modality Performed Procedure Step", "",
        *mpps_section(settings),
        "###### 4.2.1.4.9 SOP Specific Conformance for Storage Commitment Push Model", "",
        *commitment_section(settings),
    ]


def ae_specification(settings: Settings) -> list[str]:
    """Section 4.2: the one AE."""
    return [
        "### 4.2 AE Specifications", "",
        f"#### 4.2.1 {settings.ae_title} AE Specification", "",
        "##### 4.2.1.1 SOP Classes", "",
        *md_table(("SOP Class Name", "SOP Class UID", "SCU", "SCP"),
                  [(_name(c.sop_class_uid), f"`{c.sop_class_uid}`",
                    "Yes" if "SCU" in c.roles else "No", "Yes") for c in SUPPORTED_CONTEXTS]),
        *association_policies(settings),
        "##### 4.2.1.3 Association Initiation Policy", "",
        "###### 4.2.1.3.1 Activity - Send the Instances of a C-MOVE", "",
        *move_initiation_section(),
        *acceptance_policy(settings),
    ]


def statement(settings: Settings) -> str:
    """The whole statement, as Markdown."""
    lines = [
        f"# {settings.ae_title} DICOM Conformance Statement", "",
        f"minipacs {__version__}, generated by `pacs conformance` on "
        f"{datetime.date.today().isoformat()} from its configuration and code.", "",
        *overview(settings),
        *introduction(settings),
        *implementation_model(settings),
        *ae_specification(settings),
        *network_and_configuration(settings),
        *annexes()[:4],
        *character_sets(),
        *security(settings),
        *annexes()[4:],
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
