"""A harmless stand-in for the distribution's upgrade on a shared test machine.

    python -m devtools.fake_upgrade FLAG_PATH [--reboot] [--fail]

Prints what an upgrade prints, and with ``--reboot`` writes ``FLAG_PATH`` (and ``FLAG_PATH.pkgs``) the way
Debian's packages write ``/var/run/reboot-required``; ``--fail`` exits 100 like a broken apt run.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    flag = Path(argv[0])
    if "--fail" in argv:
        print("E: Sub-process /usr/bin/dpkg returned an error code (1)", file=sys.stderr)
        return 100
    print("Reading package lists... Done")
    if "--reboot" in argv:
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.write_text("*** System restart required ***\n")
        flag.with_name(flag.name + ".pkgs").write_text("linux-image-amd64\n")
        print("1 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.")
    else:
        print("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
