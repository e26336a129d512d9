"""Runtime layer: supervisor, compute budget, cleanup hooks, control socket, service glue."""
