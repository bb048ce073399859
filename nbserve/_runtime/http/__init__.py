"""The HTTP layer: Tornado's application, the route handlers and the wire details.

Everything here speaks HTTP and hands calls to the execution layer (`nbserve._runtime.execution`)
through a `Deployment`; nothing here runs user code.
"""
