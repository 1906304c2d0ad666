"""The terminal UI of `helix watch` (Textual): ``feed`` reads through ``JobControl``, ``app`` draws.

Only `helix watch` imports this package, so Textual never loads for any other command."""
