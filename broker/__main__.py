"""``python -m broker``: the same entry point as the ``broker`` command."""

from broker.cli import main

if __name__ == "__main__":
    main()
