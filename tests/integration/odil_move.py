"""C-MOVE with Debian's python3-odil, run by /usr/bin/python3 (the bindings are built for the
system python, not the venv): the move destination is this script's own AE title, and the
instances arrive on its own incoming port. Prints {"received": [SOP Instance UIDs],
"statuses": [status of every C-MOVE response]} as JSON. No tests here.

usage: odil_move.py HOST PORT CALLED_AE CALLING_AE INCOMING_PORT LEVEL KEYWORD=VALUE...
"""

import json
import sys

import odil


def text(value: object) -> str:
    """A value odil returns as bytes or str, as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def main() -> None:
    """Associate, move the identifier built from the arguments, print what came back."""
    host, port, called, calling, incoming, level, *keys = sys.argv[1:]
    syntax = odil.registry.StudyRootQueryRetrieveInformationModelMove
    context = odil.AssociationParameters.PresentationContext(
        1, syntax, [odil.registry.ImplicitVRLittleEndian, odil.registry.ExplicitVRLittleEndian],
        odil.AssociationParameters.PresentationContext.Role.SCU)
    association = odil.Association()
    association.set_peer_host(host)
    association.set_peer_port(int(port))
    association.update_parameters().set_calling_ae_title(calling) \
        .set_called_ae_title(called).set_presentation_contexts([context])
    association.associate()
    move = odil.MoveSCU(association)
    move.set_affected_sop_class(syntax)
    move.set_move_destination(calling)
    move.set_incoming_port(int(incoming))
    query = odil.DataSet()
    query.add("QueryRetrieveLevel", odil.Value.Strings([level]))
    for key in keys:
        keyword, value = key.split("=", 1)
        query.add(keyword, odil.Value.Strings([value]))
    received: list[str] = []
    statuses: list[int] = []
    move.move(query, lambda data_set: received.append(
        text(data_set.as_string("SOPInstanceUID")[0])),
        lambda message: statuses.append(int(message.get_status())))
    association.release()
    print(json.dumps({"received": received, "statuses": statuses}))


if __name__ == "__main__":
    main()
