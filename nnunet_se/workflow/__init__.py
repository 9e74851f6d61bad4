"""The ``nnunet-se`` workflow commands: env, list, check, grid, status and demo (one module per command)."""
