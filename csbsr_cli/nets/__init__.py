"""Pure torch networks: no I/O, no CLI. Built by name through csbsr_cli.registry."""
