"""``python -m kospeech COMMAND [ARGS...]``: the console scripts without installing their entry points."""

import importlib
import sys

from kospeech.cli import COMMANDS


def main() -> int:
    """Dispatch to ``kospeech.cli.<command>.main`` with the remaining arguments; returns the exit status."""
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        lines = [f"  {name:<18} = kospeech-{name}" for name in COMMANDS]
        print("usage: python -m kospeech COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines))
        return 0 if len(sys.argv) >= 2 else 2
    command = sys.argv[1]
    if command not in COMMANDS:
        print(f"unknown command {command!r}; choose one of {list(COMMANDS)}", file=sys.stderr)
        return 2
    sys.argv = [f"kospeech-{command}", *sys.argv[2:]]
    status = importlib.import_module(COMMANDS[command]).main()
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
