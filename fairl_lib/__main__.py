"""``python -m fairl_lib ...``: see :mod:`fairl_lib.cli`."""
from fairl_lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
