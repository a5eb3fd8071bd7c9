"""The subcommands of ``asr-transfer``: one module per subcommand (``add-language`` ->
``add_language.py``), each with ``add_arguments(parser)`` and ``run(args) -> int``.

The top layer: commands import from every other package, nothing imports from them but
:mod:`asr_transfer.cli` (and one command from another, for shared options).
"""
