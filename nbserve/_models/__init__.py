"""The model store: saved models by tag, their files, framework savers and `.nbmodel` archives.

The public face is `nbserve.models` (and the framework modules `nbserve.sklearn`, ...); bentos
(`nbserve._bento`) pack store entries, never the other way round.
"""
