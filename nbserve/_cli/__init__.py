"""The `nbserve` command: `nbserve serve`, `nbserve build`, `nbserve models`, ...

`main.py` builds the parser from a registry of command modules; each module (one per command)
exposes `register(subparsers) -> ArgumentParser`, which adds its parser and sets
`handler=run`, and `run(args) -> int`. Command modules import their heavy dependencies inside
`run`, so `nbserve --help` stays fast. `sizes.py` is the one helper module: byte sizes as
people read them, shared by `inspect` and `models`.
"""
