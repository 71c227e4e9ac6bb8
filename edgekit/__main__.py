"""The ``edgekit`` command: the console script and ``python -m edgekit``.

``edgekit registry ...`` goes to ``edgekit.registry.cli`` without importing the rest of the CLI (typer,
rich, the pipeline's verbs): 0.3 s of a registry command's one-second budget. ``edgekit serve`` and
``edgekit monitor`` go to ``edgekit.serve.cli`` the same way. Every other verb is ``edgekit.cli``'s.
"""

import sys


def main() -> None:
    if sys.argv[1:2] == ["registry"]:
        from edgekit.registry.cli import main as registry_main

        registry_main(sys.argv[2:])
    if sys.argv[1:2] in (["serve"], ["monitor"]):
        from edgekit.serve.cli import main as serve_main

        serve_main(sys.argv[1:])
    from edgekit.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
