"""The operator's services: placement and member sync (controller), moves (migrator), shared state."""
