"""The launcher process: ``capsule run`` (the Rust code of the command line) in a
process of its own, started by the SDK. It stays as the sandboxed process's parent,
answers its seccomp notifications and writes its records to the audit log."""

import sys

from . import _native


def main() -> None:
    # argv: ["-c", PACKAGE_PARENT, capsule run's arguments...]
    sys.exit(_native.run_cli(sys.argv[2:]))
