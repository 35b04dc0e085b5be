"""One module per CLI subcommand; see robustprompt.cli."""
