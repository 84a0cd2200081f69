"""C-MOVE with Debian's python3-odil, run by /usr/bin/python3 (the bindings are built for the
system python, not the venv). Prints {"statuses": [status of every C-MOVE response]} as JSON.
No tests here.

The destination is another AE (the tests use DCMTK's storescp), not odil's own incoming
port: odil 0.12's MoveSCU binds that port only after sending the C-MOVE request and re-binds
it every 10 ms, so the archive's sub-association is refused whenever it connects quickly.

usage: odil_move.py HOST PORT CALLED_AE CALLING_AE DESTINATION_AE LEVEL KEYWORD=VALUE...
"""

import json
import sys

import odil


def main() -> None:
    """Associate, move the identifier built from the arguments, print the statuses."""
    host, port, called, calling, destination, level, *keys = sys.argv[1:]
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
    move.set_move_destination(destination)
    query = odil.DataSet()
    query.add("QueryRetrieveLevel", odil.Value.Strings([level]))
    for key in keys:
        keyword, value = key.split("=", 1)
        query.add(keyword, odil.Value.Strings([value]))
    statuses: list[int] = []
    # No store callback: the instances go to the destination, not to us.
    move.move(query, lambda data_set: None,
              lambda message: statuses.append(int(message.get_status())))
    association.release()
    print(json.dumps({"statuses": statuses}))


if __name__ == "__main__":
    main()
