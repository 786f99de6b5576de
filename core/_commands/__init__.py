"""The ``sdready`` command: its fast reader, its subcommands, and ``sdready exec``'s
supervisor."""
