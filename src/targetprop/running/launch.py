"""torchrun as ``targetprop train --nproc N`` runs it: the same launcher
(``torch.distributed.run``), with its own reports of a run's end (a relayed
signal, a worker that exited with an error) turned into an exit code; the
workers have already said why, once, from the process that saw it.

``python -m targetprop.running.launch TORCHRUN_ARGUMENTS`` exits with the
first failed worker's code (128 + N for a worker killed by signal N), or
128 + N when torchrun itself was stopped by signal N.
"""
from __future__ import annotations

import logging
import os
import sys

__all__ = ["main"]


def main(argv: list[str]) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own choice, without its banner
    # torchrun's loggers take their level from LOGLEVEL as they are made: here, none of its warnings
    before = os.environ.get("LOGLEVEL")
    os.environ["LOGLEVEL"] = "CRITICAL"
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # and those made plainly
    if before is None:  # the workers see the user's own
        del os.environ["LOGLEVEL"]
    else:
        os.environ["LOGLEVEL"] = before
    try:
        run(get_args_parser().parse_args(argv))
    except SignalException as stop:
        return 128 + int(stop.sigval)
    except ChildFailedError as failed:
        code = failed.get_first_failure()[1].exitcode
        return 128 - code if code < 0 else code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
